using Csvmm.TestSupport;
using Csvmm.TinyGuests;

namespace Csvmm.Cli.Tests;

/// <summary>
/// The per-thread seccomp filters of the binary (needs /dev/kvm). Every other test and boot runs under the default
/// (kill), which proves the lists cover what csvmm and .NET's runtime do; these tests prove each filter refuses: a
/// hidden hook makes a thread of one kind call getppid (on no list) right after its filter is loaded.
/// </summary>
public sealed class SeccompBinaryTests : IDisposable
{
    private const int KilledBySigsys = 128 + 31;
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-seccomp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A virtio disk guest (its I/O thread starts when the guest enables the device) and its scratch disk.</summary>
    private (string Firmware, string Disk) VirtioGuest()
    {
        string firmware = Path.Combine(_dir, "virtio.fd"), disk = Path.Combine(_dir, "disk.img");
        DiskPattern.CreateImage(disk, 1 << 20, 1);
        File.WriteAllBytes(firmware, DiskGuest.Build(new DiskGuestOptions
        {
            Interface = DiskInterface.Virtio,
            Operations = [DiskOp.ReadVerify(0, 8, 1), DiskOp.Write(8, 8, 2), DiskOp.Flush(), DiskOp.ReadVerify(8, 8, 2)],
        }));
        return (firmware, disk);
    }

    private string[] Guest(string role, string mode)
    {
        var (firmware, disk) = VirtioGuest();
        return ["--firmware", firmware, "--memory", "64M", "--disk", $"{disk},if=virtio", "--serial", $"file:{Path.Combine(_dir, "serial.txt")}",
            "--timeout", "30", "--seccomp", mode, "--seccomp-selftest", role];
    }

    [Theory]
    [InlineData("vcpu")]
    [InlineData("device-io")]
    [InlineData("console")]
    public void A_thread_that_makes_a_call_off_its_list_kills_csvmm_with_SIGSYS(string role)
    {
        HostRequirements.RequireKvm("this test runs a guest under the seccomp filters");
        var (code, _, stderr) = BinaryTests.Csvmm(Guest(role, "kill"));
        Assert.True(code == KilledBySigsys, $"exit {code}, expected death by SIGSYS:\n{stderr}");
    }

    [Fact]
    public void In_log_mode_the_same_call_is_allowed_and_the_guest_runs_to_the_end()
    {
        HostRequirements.RequireKvm("this test runs a guest under the seccomp filters");
        var (code, _, stderr) = BinaryTests.Csvmm(Guest("vcpu", "log"));
        Assert.True(code == 0, $"exit {code}:\n{stderr}");
        Assert.Contains("PASS", File.ReadAllText(Path.Combine(_dir, "serial.txt")));
    }

    [Fact]
    public void The_default_filters_let_a_virtio_guest_read_write_and_flush_its_disk()
    {
        HostRequirements.RequireKvm("this test runs a guest under the seccomp filters");
        var (firmware, disk) = VirtioGuest();
        string serial = Path.Combine(_dir, "serial.txt");
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", firmware, "--memory", "64M", "--disk", $"{disk},if=virtio", "--serial", $"file:{serial}", "--timeout", "30");
        Assert.True(code == 0, $"exit {code}:\n{stderr}");
        Assert.Contains("PASS", File.ReadAllText(serial));
    }

    [Theory]
    [InlineData("--seccomp", "sometimes", "expected kill, log or off")]
    [InlineData("--seccomp-selftest", "gpu", "expected vcpu, device-io or console")]
    public void Nonsense_values_are_usage_errors(string option, string value, string fragment)
    {
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", "/nonexistent.fd", option, value);
        Assert.Equal(2, code);
        BinaryTests.AssertOneLineError(stderr, fragment);
    }
}
