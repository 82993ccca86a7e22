using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

using Csvmm.TinyGuests;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// A real-mode guest reads the CMOS clock the way a BIOS does (wait while update-in-progress, honour register B's
/// binary/BCD and 12/24-hour bits) and reports the decoded date and time on a test port.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class CmosGuestTests
{
    private const byte CmosIndex = 0x70, CmosData = 0x71;
    private const byte RegSeconds = 0x00, RegMinutes = 0x02, RegHours = 0x04, RegDay = 0x07, RegMonth = 0x08, RegYear = 0x09;
    private const byte RegA = 0x0A, RegB = 0x0B;
    private const byte RegAUpdateInProgress = 0x80, RegBBinary = 0x04, RegB24Hour = 0x02;
    private const ulong Raw = 0x500;
    private static readonly byte[] TimeRegisters = [RegSeconds, RegMinutes, RegHours, RegDay, RegMonth, RegYear];

    [Fact]
    public void GuestReadsTheHostUtcTimeFromTheCmosClock()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "read RTC", a =>
        {
            // As Linux's mach_get_cmos_time: wait while an update is in progress, read everything, and start over
            // if the seconds moved meanwhile. Raw values go to RAM at 0x500 (DS = 0 after reset).
            var again = a.CreateLabel();
            a.Label(ref again);
            ReadCmos(a, RegA);
            a.test(al, RegAUpdateInProgress);
            a.jnz(again);
            for (int i = 0; i < TimeRegisters.Length; i++)
            {
                ReadCmos(a, TimeRegisters[i]);
                a.mov(__byte_ptr[Raw + (ulong)i], al);
            }
            ReadCmos(a, RegSeconds);
            a.cmp(__byte_ptr[Raw], al);
            a.jne(again);

            ReadCmos(a, RegB);
            a.mov(bl, al);                 // BL = register B for the whole conversion
            a.mov(dx, GuestCode.TestPort);
            a.@out(dx, al);
            for (int i = 0; i < TimeRegisters.Length; i++)
            {
                a.mov(al, __byte_ptr[Raw + (ulong)i]);
                if (TimeRegisters[i] == RegHours) Hours(a);
                else ToBinary(a);
                a.mov(dx, GuestCode.TestPort);
                a.@out(dx, al);
            }
            GuestCode.PowerOff(a);
        });
        var log = new AccessLog();

        DateTime before = DateTime.UtcNow;
        GuestRun run = TinyGuest.Run(image.Build(), extraDevices: vm =>
            vm.PortBus.Register(GuestCode.TestPort, 1, new RecordingDevice("rtc", log), "RTC report"));
        DateTime after = DateTime.UtcNow;

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Access[] report = log.Snapshot();
        Assert.Equal(7, report.Length);
        Assert.All(report, r => Assert.True(r.IsWrite && r.Size == 1, r.ToString()));
        int[] v = report.Select(r => (int)r.Value).ToArray();
        byte regB = (byte)v[0];
        Assert.True((regB & RegB24Hour) != 0 || v[3] < 24, $"register B 0x{regB:x2}");
        var guestTime = new DateTime(2000 + v[6], v[5], v[4], v[3], v[2], v[1], DateTimeKind.Utc);
        // Whole seconds only, read somewhere between before and after.
        Assert.InRange(guestTime, before.AddSeconds(-2), after.AddSeconds(2));
    }

    /// <summary>AL = CMOS[reg] (index bit 7, NMI disable, left clear).</summary>
    private static void ReadCmos(Assembler a, byte reg)
    {
        a.mov(al, reg);
        a.@out(CmosIndex, al);
        a.@in(al, CmosData);
    }

    /// <summary>AL = binary value of AL when register B (in BL) says BCD; clobbers AH, CL.</summary>
    private static void ToBinary(Assembler a)
    {
        var done = a.CreateLabel();
        a.test(bl, RegBBinary);
        a.jnz(done);
        a.mov(ah, al);
        a.and(al, 0x0F);
        a.shr(ah, 4);                      // AL += AH * 10 = AH*8 + AH*2
        a.mov(cl, ah);
        a.shl(ah, 3);
        a.shl(cl, 1);
        a.add(al, ah);
        a.add(al, cl);
        a.Label(ref done);
    }

    /// <summary>Hours: bit 7 is PM in 12-hour mode; converts to 0-23. Clobbers AH, CL, CH.</summary>
    private static void Hours(Assembler a)
    {
        var done = a.CreateLabel();
        var am = a.CreateLabel();
        a.mov(ch, al);
        a.and(al, 0x7F);
        ToBinary(a);
        a.test(bl, RegB24Hour);
        a.jnz(done);
        a.cmp(al, 12);                     // 12 AM is 0, 12 PM is 12
        a.jne(am);
        a.xor(al, al);
        a.Label(ref am);
        a.test(ch, 0x80);
        a.jz(done);
        a.add(al, 12);
        a.Label(ref done);
    }
}
