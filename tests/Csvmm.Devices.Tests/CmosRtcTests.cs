using Csvmm.Devices.Legacy;

namespace Csvmm.Devices.Tests;

public sealed class CmosRtcTests
{
    private const ulong MiB = 1024 * 1024, GiB = 1024 * MiB;

    // Friday 2024-03-15 13:45:56.5 UTC.
    private DateTimeOffset _now = new(2024, 3, 15, 13, 45, 56, 500, TimeSpan.Zero);
    private readonly FakeIrqLine _irq = new();
    private readonly CmosRtc _rtc;

    public CmosRtcTests() => _rtc = Create(32 * MiB);

    private CmosRtc Create(ulong ram, int cpus = 1) => new(() => _now, ram, cpus, _irq);

    private static byte Get(CmosRtc rtc, byte index)
    {
        rtc.WriteByte(0, index);
        return rtc.ReadByte(1);
    }

    private static void Set(CmosRtc rtc, byte index, byte value)
    {
        rtc.WriteByte(0, index);
        rtc.WriteByte(1, value);
    }

    private byte Get(byte index) => Get(_rtc, index);
    private void Set(byte index, byte value) => Set(_rtc, index, value);

    private static int Word(CmosRtc rtc, byte index) => Get(rtc, index) | Get(rtc, (byte)(index + 1)) << 8;

    [Fact]
    public void TimeInBcd24Hour()
    {
        Assert.Equal(0x56, Get(0x00));
        Assert.Equal(0x45, Get(0x02));
        Assert.Equal(0x13, Get(0x04));
        Assert.Equal(0x06, Get(0x06)); // Friday (1 = Sunday)
        Assert.Equal(0x15, Get(0x07));
        Assert.Equal(0x03, Get(0x08));
        Assert.Equal(0x24, Get(0x09));
        Assert.Equal(0x20, Get(0x32));
        Assert.Equal(0x02, Get(0x0B));
    }

    [Fact]
    public void TimeInBinary()
    {
        Set(0x0B, 0x06);
        Assert.Equal(56, Get(0x00));
        Assert.Equal(45, Get(0x02));
        Assert.Equal(13, Get(0x04));
        Assert.Equal(15, Get(0x07));
        Assert.Equal(24, Get(0x09));
        Assert.Equal(20, Get(0x32));
    }

    [Theory]
    [InlineData(13, 0x00, 0x81)] // BCD, 12 h: 1 PM
    [InlineData(0, 0x00, 0x12)]  // midnight is 12 AM
    [InlineData(12, 0x00, 0x92)] // noon is 12 PM
    [InlineData(23, 0x04, 0x8B)] // binary, 12 h: 11 PM
    [InlineData(9, 0x04, 0x09)]
    public void TwelveHourMode(int hour, byte formatBits, byte expected)
    {
        _now = new DateTimeOffset(2024, 3, 15, hour, 0, 0, TimeSpan.Zero);
        Set(0x0B, formatBits);
        Assert.Equal(expected, Get(0x04));
    }

    [Fact]
    public void DaylightSavingBitIsStoredButIgnored()
    {
        Set(0x0B, 0x03);
        Assert.Equal(0x03, Get(0x0B));
        Assert.Equal(0x13, Get(0x04));
    }

    [Fact]
    public void IndexBit7IsTheNmiMask()
    {
        _rtc.WriteByte(0, 0x80 | 0x0D);
        Assert.True(_rtc.NmiDisabled);
        Assert.Equal(0x80, _rtc.ReadByte(1)); // still register D
        _rtc.WriteByte(0, 0x0A);
        Assert.False(_rtc.NmiDisabled);
        Assert.Equal(0xFF, _rtc.ReadByte(0)); // the index port is write-only
    }

    [Fact]
    public void WordWriteSetsIndexAndData()
    {
        _rtc.WriteValue(0, 2, 0x5A_40); // index 0x40, data 0x5A
        Assert.Equal(0x5A, Get(0x40));
    }

    [Fact]
    public void UpdateInProgressInTheLast244MicrosecondsOfASecond()
    {
        // The window is [9_997_560, 10_000_000) ticks into each second.
        _now = new DateTimeOffset(2024, 3, 15, 13, 45, 56, TimeSpan.Zero).AddTicks(9_997_500);
        Assert.Equal(0x26, Get(0x0A));
        _now = _now.AddTicks(100);
        Assert.Equal(0xA6, Get(0x0A));
        Assert.Equal(0x56, Get(0x00));       // the registers still show the old second
        _now = _now.AddTicks(2_500);         // the next second has begun
        Assert.Equal(0x26, Get(0x0A));
        Assert.Equal(0x57, Get(0x00));

        _now = _now.AddTicks(9_999_000);
        Assert.Equal(0xA6, Get(0x0A));
        Set(0x0B, 0x82);                     // SET stops updates
        Assert.Equal(0x26, Get(0x0A));
        Set(0x0B, 0x02);
        Set(0x0A, 0x76);                     // divider held in reset
        Assert.Equal(0x76, Get(0x0A));
    }

    [Fact]
    public void RegisterDReportsValidTimeAndIgnoresWrites()
    {
        Set(0x0D, 0x00);
        Assert.Equal(0x80, Get(0x0D));
    }

    [Fact]
    public void GuestSetsTheClockWithTheSetBit()
    {
        Set(0x0B, 0x82);
        Set(0x00, 0x05);
        Set(0x02, 0x04);
        Set(0x04, 0x03);
        Set(0x07, 0x02);
        Set(0x08, 0x01);
        Set(0x09, 0x30);
        Assert.Equal(0x05, Get(0x00));       // held values read back while SET
        Set(0x0B, 0x02);
        Assert.Equal(0x05, Get(0x00));
        Assert.Equal(0x30, Get(0x09));
        Assert.Equal(0x04, Get(0x06));       // 2030-01-02 is a Wednesday
        _now = _now.AddSeconds(10);
        Assert.Equal(0x15, Get(0x00));
        Assert.Equal(0x04, Get(0x02));
        Assert.Equal(new DateTime(2030, 1, 2, 3, 4, 5) - new DateTime(2024, 3, 15, 13, 45, 56), _rtc.GuestClockOffset);
    }

    [Fact]
    public void SingleWriteWithoutSetTakesEffect()
    {
        Set(0x02, 0x30);
        Assert.Equal(0x30, Get(0x02));
        Assert.Equal(0x56, Get(0x00));
        Assert.Equal(0x13, Get(0x04));
    }

    [Fact]
    public void InvalidDateIsIgnoredAndCounted()
    {
        Set(0x08, 0x13);                     // month 13
        Assert.Equal(1, _rtc.InvalidTimeWrites);
        Assert.Equal(0x03, Get(0x08));
        Set(0x02, 0x5A);                     // not BCD
        Assert.Equal(2, _rtc.InvalidTimeWrites);
        Assert.Equal(0x45, Get(0x02));
    }

    [Fact]
    public void UpdateEndedFlagRaisesIrq8WhenEnabled()
    {
        Assert.Equal(0x00, Get(0x0C));
        Set(0x0A, 0x20);                     // no periodic flag in the way
        Set(0x0B, 0x12);                     // UIE
        _now = _now.AddSeconds(1);
        _rtc.Poll();
        Assert.Equal([true], _irq.Calls);
        Assert.Equal(0x90, Get(0x0C));       // IRQF | UF, cleared by the read
        Assert.Equal([true, false], _irq.Calls);
        Assert.Equal(0x00, Get(0x0C));
    }

    [Fact]
    public void FlagsWithoutEnableDoNotInterrupt()
    {
        _now = _now.AddSeconds(2);
        Assert.Equal(0x50, Get(0x0C));       // UF and PF (1024 Hz), no IRQF
        Assert.Empty(_irq.Calls);
    }

    [Fact]
    public void AlarmFlagWhenTheAlarmTimePasses()
    {
        Set(0x0A, 0x20);                     // no periodic interrupt
        Set(0x01, 0x01);                     // alarm at hh:mm:01 every minute ...
        Set(0x03, 0x46);                     // ... of minute 46
        Set(0x05, 0xC0);                     // any hour
        Set(0x0B, 0x22);                     // AIE
        Get(0x0C);
        _now = _now.AddSeconds(3);           // 13:45:59
        Assert.Equal(0x10, Get(0x0C));       // UF only
        Assert.Empty(_irq.Calls);
        _now = _now.AddSeconds(3);           // 13:46:02: 13:46:01 went by
        _rtc.Poll();
        Assert.True(_irq.Level);
        Assert.Equal(0xB0, Get(0x0C));
        Assert.False(_irq.Level);
    }

    [Fact]
    public void AlarmAfterMoreThanADayAlwaysMatches()
    {
        Set(0x01, 0x00);
        Set(0x03, 0x00);
        Set(0x05, 0x00);
        Get(0x0C);
        _now = _now.AddDays(2);
        Assert.Equal(0x20, Get(0x0C) & 0x20);
    }

    [Fact]
    public void PeriodicFlagAtTheRateOfRegisterA()
    {
        Set(0x0A, 0x2F);                     // rate 15: 2 Hz
        Set(0x0B, 0x42);                     // PIE
        Get(0x0C);
        _now = _now.AddMilliseconds(100);    // 56.6 s: same half-second
        Assert.Equal(0x00, Get(0x0C) & 0x40);
        _now = _now.AddMilliseconds(400);    // 57.0 s: crossed 56.5 → 57.0 boundary
        _rtc.Poll();
        Assert.True(_irq.Level);
        Assert.Equal(0xC0, Get(0x0C) & 0xC0);
    }

    [Fact]
    public void MemoryBytesFor32MiB()
    {
        var rtc = Create(32 * MiB, cpus: 2);
        Assert.Equal(640, Word(rtc, 0x15));
        Assert.Equal(31 * 1024, Word(rtc, 0x17));
        Assert.Equal(31 * 1024, Word(rtc, 0x30));
        Assert.Equal(256, Word(rtc, 0x34));   // 16 MiB in 64 KiB units
        Assert.Equal(0, Get(rtc, 0x5B) | Get(rtc, 0x5C) | Get(rtc, 0x5D));
        Assert.Equal(1, Get(rtc, 0x5F));
        Assert.Equal(0x00, Get(rtc, 0x10));
        Assert.Equal(0x06, Get(rtc, 0x14));
    }

    [Fact]
    public void MemoryBytesFor3GiB()
    {
        var rtc = Create(3 * GiB);
        Assert.Equal(0xFFFF, Word(rtc, 0x17));
        Assert.Equal(0xFFFF, Word(rtc, 0x30));
        Assert.Equal((int)((3 * GiB - 16 * MiB) / 65536), Word(rtc, 0x34)); // 0xBF00
        Assert.Equal(0, Get(rtc, 0x5B) | Get(rtc, 0x5C) | Get(rtc, 0x5D));
        Assert.Equal(0, Get(rtc, 0x5F));
    }

    [Fact]
    public void MemoryBytesFor6GiB()
    {
        var rtc = Create(6 * GiB, cpus: 4);
        Assert.Equal(0xFFFF, Word(rtc, 0x17));
        Assert.Equal(0xBF00, Word(rtc, 0x34));
        // 3 GiB above 4 GiB = 0xC000 units of 64 KiB.
        Assert.Equal(0x00, Get(rtc, 0x5B));
        Assert.Equal(0xC0, Get(rtc, 0x5C));
        Assert.Equal(0x00, Get(rtc, 0x5D));
        Assert.Equal(3, Get(rtc, 0x5F));
    }

    [Fact]
    public void ChecksumCoversBytes10To2D()
    {
        int sum = 0;
        for (byte i = 0x10; i <= 0x2D; i++) sum += Get(i);
        Assert.Equal(sum, Get(0x2E) << 8 | Get(0x2F));
    }

    [Fact]
    public void OrdinaryCmosRamIsReadWrite()
    {
        Set(0x70, 0x42);
        Assert.Equal(0x42, Get(0x70));
        Assert.Equal(0x42, _rtc.PeekRaw(0x70));
    }

    [Fact]
    public void ConstructorRejectsBadCpuCount()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(32 * MiB, cpus: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(32 * MiB, cpus: 257));
    }
}
