using Csvmm.TinyGuests;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>The simplest firmware: real mode from the reset vector, COM1, ACPI power-off; and the watchdog.</summary>
[Collection(KvmGuests.Name)]
public sealed class RealModeGuestTests
{
    [Fact]
    public void RealModeGuestPrintsOnCom1AndPowersOffThroughAcpi()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "hello", a =>
        {
            GuestCode.Print(a, "hello\r\n");
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build());

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Assert.Equal("hello\r\n", run.Serial);
        Assert.Equal(1, run.Boots);
    }

    [Fact]
    public void WatchdogStopsAGuestThatSpinsForever()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "spin", a =>
        {
            GuestCode.PutChar(a, 'S');
            var self = a.CreateLabel();
            a.Label(ref self);
            a.jmp(self);
        });

        GuestRun run = TinyGuest.Run(image.Build(), timeout: TimeSpan.FromSeconds(2));

        Assert.True(run.Outcome.Kind == VmExitKind.Timeout, run.Describe());
        Assert.Equal("S", run.Serial); // it did run before it was stopped
        Assert.InRange(run.Elapsed, TimeSpan.FromSeconds(1.9), TimeSpan.FromSeconds(6));
        VirtualMachine vm = Assert.Single(run.Machines);
        Assert.All(vm.Vcpus, v => Assert.True(v.Join(TimeSpan.Zero), $"vCPU {v.Vcpu.Id} is still running after the timeout"));
    }

    [Fact]
    public void LargeGuestsGetThe32BitPciHoleBelow4GiB()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "off", GuestCode.PowerOff);
        string[] regions = [];

        GuestRun run = TinyGuest.Run(image.Build(), memoryBytes: 5UL << 30,
            extraDevices: vm => regions = vm.Memory.Regions.Select(r => $"{r.Name} {r.Start.Value:x} {r.Size:x}").ToArray());

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Assert.Equal(["ram-low 0 c0000000", "bios ffff0000 10000", "ram-high 100000000 80000000"], regions);
    }
}
