using static Iced.Intel.AssemblerRegisters;

using Csvmm.TinyGuests;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// Two vCPUs: the BSP wakes the AP with INIT + SIPI through its local APIC; the AP runs a real-mode trampoline
/// the BSP copied to 0x8000, prints 'B' and raises a flag; the BSP waits for the flag, prints 'A', powers off.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class SmpGuestTests
{
    private const uint TrampolineImage = 0xFD000;
    private const ushort TrampolineSize = 0x100;
    private const uint Trampoline = 0x8000;
    private const uint Flag = 0x7000;
    private const uint LapicIcrLow = 0xFEE0_0300;
    /// <summary>ICR: destination shorthand "all excluding self" (bits 19:18 = 3), level assert (bit 14).</summary>
    private const uint IcrAllButSelf = (3u << 18) | (1u << 14);
    private const uint IcrInit = IcrAllButSelf | (5u << 8);
    private const uint IcrStartup = IcrAllButSelf | (6u << 8) | (Trampoline >> 12);

    [Fact]
    public void BspStartsTheApWithInitSipiAndBothRun()
    {
        var image = new FirmwareImage(fill: 0);
        GuestCode.AddTables(image);
        image.Add(16, TrampolineImage, ip: 0, "AP trampoline", a =>
        {
            a.cli();
            a.xor(ax, ax);
            a.mov(ds, ax);
            GuestCode.PutChar(a, 'B');
            a.mov(__byte_ptr[(ulong)Flag], 1);
            GuestCode.HaltForever(a);
        });
        image.Add16(GuestCode.Entry16, "BSP real mode", a =>
        {
            a.cli();
            a.cld();
            a.mov(ax, FirmwareImage.Segment);
            a.mov(ds, ax);
            a.xor(ax, ax);
            a.mov(es, ax);
            a.mov(si, (ushort)(TrampolineImage - FirmwareImage.LowBase));
            a.mov(di, (ushort)Trampoline);
            a.mov(cx, TrampolineSize);
            a.rep.movsb();
            GuestCode.EnterProtectedMode(a);
        });
        image.Add32(GuestCode.Code32, "BSP protected mode", a =>
        {
            GuestCode.FlatSegments32(a);
            a.mov(__dword_ptr[(ulong)LapicIcrLow], IcrInit);
            a.mov(__dword_ptr[(ulong)LapicIcrLow], IcrStartup);
            var wait = a.CreateLabel();
            a.Label(ref wait);
            a.pause();
            a.cmp(__byte_ptr[(ulong)Flag], 1);
            a.jne(wait);
            GuestCode.PutChar(a, 'A');
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build(), cpus: 2, timeout: TimeSpan.FromSeconds(20));

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Assert.Equal("BA", run.Serial);
        VirtualMachine vm = Assert.Single(run.Machines);
        Assert.Equal(2, vm.Vcpus.Count);
        Assert.All(vm.Vcpus, v => Assert.True(v.Dispatcher.Counts[(int)Csvmm.Kvm.KvmExitReason.Io] > 0,
            $"vCPU {v.Vcpu.Id} made no port-I/O exit: it did not run guest code"));
    }
}
