using Csvmm.TestSupport;

namespace Csvmm.TinyGuests.Tests;

/// <summary>The QEMU-backed tests run one at a time (the host has 2 CPUs; each guest polls on one).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class QemuGuests
{
    public const string Name = "QEMU guests";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>Boots <paramref name="options"/>' image under QEMU with <paramref name="disk"/> and checks the guest passed.</summary>
    public static GuestRunResult RunExpectingPass(DiskGuestOptions options, DiskAttachment disk)
    {
        GuestRunResult run = Run(options, disk);
        Assert.True(run.Passed && run.ExitCode == GuestRun.ExpectedPassExitCode(run.Vmm) && !run.TimedOut, run.Describe());
        return run;
    }

    public static GuestRunResult Run(DiskGuestOptions options, DiskAttachment disk)
    {
        RequireQemu();
        return GuestRun.RunQemu(DiskGuest.Build(options), disk, Timeout);
    }

    /// <summary>These tests need KVM and QEMU: without them they fail with this message rather than skip.</summary>
    public static void RequireQemu()
    {
        HostRequirements.RequireKvm("the tiny-guest tests boot their guests under qemu-system-x86_64 -enable-kvm");
        string? path = Environment.GetEnvironmentVariable("PATH")?.Split(':')
            .Select(dir => System.IO.Path.Combine(dir, GuestRun.QemuBinary)).FirstOrDefault(File.Exists);
        if (path is null) Assert.Fail($"{GuestRun.QemuBinary} is not on PATH (./build.sh installs qemu-system-x86)");
    }
}
