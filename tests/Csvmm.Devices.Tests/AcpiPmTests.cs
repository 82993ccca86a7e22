using Csvmm.Devices.Legacy;

namespace Csvmm.Devices.Tests;

public sealed class AcpiPmTests
{
    private readonly FakeVmControl _control = new();
    private readonly FakeIrqLine _sci = new();
    private long _ticks = 1_000_000; // arbitrary start: the timer counts from construction
    private readonly AcpiPm _pm;

    // One clock tick per PM timer tick makes the expected counts exact.
    public AcpiPmTests() => _pm = new AcpiPm(_control, _sci, 5, () => _ticks, AcpiPm.TimerFrequency);

    [Fact]
    public void SleepEnableWithS5PowersOff()
    {
        // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN.
        _pm.ControlBlock.WriteValue(0, 2, 5 << 10 | 1);
        Assert.Empty(_control.PowerOffs);
        _pm.ControlBlock.WriteValue(0, 2, 5 << 10 | 1 << 13 | 1);
        Assert.Equal(["ACPI S5"], _control.PowerOffs);
    }

    [Fact]
    public void HighByteWriteAloneCanPowerOff()
    {
        _pm.ControlBlock.WriteByte(1, (5 << 2) | (1 << 5));
        Assert.Single(_control.PowerOffs);
    }

    [Fact]
    public void OtherSleepStatesAreCountedNotEntered()
    {
        _pm.ControlBlock.WriteValue(0, 2, 1 << 10 | 1 << 13);    // S1
        Assert.Empty(_control.PowerOffs);
        Assert.Equal(1, _pm.UnsupportedSleepRequests);
    }

    [Fact]
    public void ControlRegisterReadsSciEnAndSleepTypeButNotSleepEnable()
    {
        Assert.Equal(0x0001UL, _pm.ControlBlock.ReadValue(0, 2));
        _pm.ControlBlock.WriteValue(0, 2, 3 << 10 | 1 << 13);    // S3 request, ignored
        Assert.Equal((ulong)(3 << 10 | 1), _pm.ControlBlock.ReadValue(0, 2));
        _pm.ControlBlock.WriteValue(0, 2, 0);                     // SCI_EN cannot be cleared
        Assert.Equal(0x0001UL, _pm.ControlBlock.ReadValue(0, 2));
    }

    [Fact]
    public void PowerButtonStatusIsWriteOneToClearAndDrivesTheSci()
    {
        _pm.PressPowerButton();
        Assert.Empty(_sci.Calls);                                  // PWRBTN_EN is clear
        Assert.Equal((ulong)AcpiPm.PowerButtonStatus, _pm.EventBlock.ReadValue(0, 2));
        _pm.EventBlock.WriteValue(2, 2, AcpiPm.PowerButtonStatus); // PM1_EN
        Assert.Equal([true], _sci.Calls);
        Assert.Equal((ulong)AcpiPm.PowerButtonStatus << 16 | AcpiPm.PowerButtonStatus, _pm.EventBlock.ReadValue(0, 4));
        _pm.EventBlock.WriteValue(0, 2, 0);                        // writing 0 changes nothing
        Assert.True(_sci.Level);
        _pm.EventBlock.WriteValue(0, 2, AcpiPm.PowerButtonStatus); // writing 1 clears
        Assert.Equal([true, false], _sci.Calls);
        Assert.Equal(0UL, _pm.EventBlock.ReadValue(0, 2));
    }

    [Fact]
    public void EnableRegisterKeepsOnlyDefinedBits()
    {
        _pm.EventBlock.WriteValue(2, 2, 0xFFFF);
        Assert.Equal(0x0721UL, _pm.EventBlock.ReadValue(2, 2));
    }

    [Fact]
    public void TimerCountsAt3579545HzFromConstruction()
    {
        Assert.Equal(0UL, _pm.Timer.ReadValue(0, 4));
        _ticks += 1234;
        Assert.Equal(1234UL, _pm.Timer.ReadValue(0, 4));
        Assert.Equal(1234UL & 0xFF, _pm.Timer.ReadValue(0, 1));
        Assert.Equal(1234UL >> 8, _pm.Timer.ReadValue(1, 1));
        _pm.Timer.WriteValue(0, 4, 0);                              // read-only
        Assert.Equal(1234UL, _pm.Timer.ReadValue(0, 4));
    }

    [Fact]
    public void TimerWrapsAt24BitsAndSetsTimerStatus()
    {
        _ticks += 0xFF_FFFF;
        Assert.Equal(0xFF_FFFFUL, _pm.Timer.ReadValue(0, 4));
        _ticks += 1;
        Assert.Equal(0UL, _pm.Timer.ReadValue(0, 4));
        _ticks += 5;
        Assert.Equal(5UL, _pm.Timer.ReadValue(0, 4));
        // Bit 23 flipped twice since construction: TMR_STS is set, and clears by writing 1.
        Assert.Equal((ulong)AcpiPm.TimerStatus, _pm.EventBlock.ReadValue(0, 2) & AcpiPm.TimerStatus);
        _pm.EventBlock.WriteValue(0, 2, AcpiPm.TimerStatus);
        Assert.Equal(0UL, _pm.EventBlock.ReadValue(0, 2));
    }

    [Fact]
    public void TimerScalesOtherClockFrequencies()
    {
        long t = 0;
        var pm = new AcpiPm(_control, _sci, 5, () => t, 1_000_000_000); // nanoseconds
        t = 1_000_000_000;                                               // one second
        Assert.Equal((ulong)(AcpiPm.TimerFrequency & 0xFF_FFFF), pm.Timer.ReadValue(0, 4));
        t = 3_600_000_000_000;                                           // an hour: no overflow
        Assert.Equal((ulong)(AcpiPm.TimerFrequency * 3600 & 0xFF_FFFF), pm.Timer.ReadValue(0, 4));
    }

    [Fact]
    public void RealClockTimerIsMonotonicModulo24Bits()
    {
        var pm = new AcpiPm(_control, _sci);
        uint previous = pm.TimerValue;
        for (int i = 0; i < 10_000; i++)
        {
            uint now = pm.TimerValue;
            uint delta = (now - previous) & 0xFF_FFFF;
            Assert.True(delta < 0x80_0000, $"timer went backwards: {previous:x} -> {now:x}");
            previous = now;
        }
    }

    [Fact]
    public void BadSleepTypeIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AcpiPm(_control, _sci, 8, () => 0, 1));
    }
}
