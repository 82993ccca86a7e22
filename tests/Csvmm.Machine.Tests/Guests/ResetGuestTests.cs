using static Iced.Intel.AssemblerRegisters;

using Csvmm.TinyGuests;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>The i8042 reset line: a stop with --no-reboot, a fresh machine without it.</summary>
[Collection(KvmGuests.Name)]
public sealed class ResetGuestTests
{
    [Fact]
    public void I8042ResetEndsTheRunWhenRebootIsOff()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "reset", a =>
        {
            GuestCode.PutChar(a, 'R');
            GuestCode.ResetViaI8042(a);
        });

        GuestRun run = TinyGuest.Run(image.Build(), noReboot: true);

        Assert.True(run.Outcome.Kind == VmExitKind.Reset, run.Describe());
        Assert.Equal("R", run.Serial);
        Assert.Equal(1, run.Boots);
    }

    [Fact]
    public void I8042ResetRebootsAFreshMachineWhenRebootIsOn()
    {
        // A test port tells the guest which boot this is: boot 1 resets, boot 2 powers off.
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "boot counter", a =>
        {
            var second = a.CreateLabel();
            a.mov(dx, GuestCode.TestPort);
            a.@in(al, dx);
            a.mov(cl, al);
            a.mov(bl, al);
            a.add(bl, (byte)'0');
            GuestCode.PutBl(a);
            a.cmp(cl, 1);
            a.jne(second);
            GuestCode.ResetViaI8042(a);
            a.Label(ref second);
            GuestCode.PowerOff(a);
        });
        int boots = 0;
        var log = new AccessLog();

        GuestRun run = TinyGuest.Run(image.Build(), noReboot: false, extraDevices: vm =>
        {
            int thisBoot = ++boots;
            vm.PortBus.Register(GuestCode.TestPort, 1, new RecordingDevice("boot", log, (_, _) => (ulong)thisBoot), "boot counter");
        });

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Assert.Equal(2, run.Boots);
        Assert.Equal("12", run.Serial);
        Assert.Equal([Access.R("boot", 0, 1, 1), Access.R("boot", 0, 1, 2)], log.Snapshot());
        Assert.Equal(2, run.Machines.Count);
        Assert.NotSame(run.Machines[0], run.Machines[1]);
    }
}
