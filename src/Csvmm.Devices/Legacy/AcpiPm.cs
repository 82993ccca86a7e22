using System.Diagnostics;

using Csvmm.Devices.State;

namespace Csvmm.Devices.Legacy;

/// <summary>
/// The fixed-hardware ACPI power-management registers of the FADT, as three bus devices that share state:
/// <see cref="EventBlock"/> (PM1a_EVT_BLK, 4 bytes: offset 0-1 PM1_STS, offset 2-3 PM1_EN),
/// <see cref="ControlBlock"/> (PM1a_CNT_BLK, 2 bytes: PM1_CNT) and <see cref="Timer"/> (PM_TMR_BLK, 4 bytes:
/// the 24-bit, 3.579545 MHz power-management timer). Each sees offsets from its own block's start.
/// </summary>
/// <remarks>
/// <para>PM1_STS bits are write-1-to-clear; PM1_EN holds TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN and RTC_EN. The SCI is
/// a level: high while a status bit is set together with its enable bit.</para>
/// <para>PM1_CNT: SCI_EN (bit 0) always reads 1 — the platform has no SMI command port, so it is in ACPI mode from
/// power-on; BM_RLD and SLP_TYP (bits 10-12) are stored; GBL_RLS and SLP_EN (bit 13) are write-only. Writing SLP_EN
/// with SLP_TYP equal to the S5 value asks <see cref="IVmControl.RequestPowerOff"/>; other sleep states are not
/// supported and only counted (<see cref="UnsupportedSleepRequests"/>).</para>
/// <para>Timer: elapsed monotonic time since construction times 3.579545 MHz, truncated to 24 bits (TMR_VAL_EXT = 0).
/// TMR_STS is set when bit 23 of the count has flipped since it was last looked at, worked out on each access to
/// the event block: there is no host timer, so a guest that waits for a timer-overflow SCI without touching the
/// registers never gets one (Linux uses the PM timer only as a clock source).</para>
/// </remarks>
public sealed class AcpiPm : IStatefulDevice
{
    /// <summary>PM timer frequency in Hz.</summary>
    public const long TimerFrequency = 3_579_545;

    /// <summary>SLP_TYP for S5 when the machine does not say (must match the DSDT's \_S5 package).</summary>
    public const int DefaultS5SleepType = 5;

    /// <summary>PM1_STS / PM1_EN bit: timer carry (bit 23 flipped).</summary>
    public const ushort TimerStatus = 0x0001;
    /// <summary>PM1_STS / PM1_EN bit: global lock release.</summary>
    public const ushort GlobalStatus = 0x0020;
    /// <summary>PM1_STS / PM1_EN bit: power button pressed.</summary>
    public const ushort PowerButtonStatus = 0x0100;
    /// <summary>PM1_STS / PM1_EN bit: sleep button pressed.</summary>
    public const ushort SleepButtonStatus = 0x0200;
    /// <summary>PM1_STS / PM1_EN bit: RTC alarm.</summary>
    public const ushort RtcStatus = 0x0400;
    /// <summary>PM1_STS bit: woken from a sleep state.</summary>
    public const ushort WakeStatus = 0x8000;
    private const ushort BusMasterStatus = 0x0010;

    private const ushort EnableMask = TimerStatus | GlobalStatus | PowerButtonStatus | SleepButtonStatus | RtcStatus;
    private const ushort StatusMask = EnableMask | BusMasterStatus | WakeStatus;

    /// <summary>PM1_CNT bit: SCI enabled (ACPI mode).</summary>
    public const ushort SciEnable = 0x0001;
    private const ushort BusMasterReload = 0x0002;
    private const int SleepTypeShift = 10;
    private const ushort SleepTypeMask = 0x1C00;
    /// <summary>PM1_CNT bit: enter the sleep state in SLP_TYP.</summary>
    public const ushort SleepEnable = 0x2000;

    private const string PowerOffReason = "ACPI S5";

    private readonly Lock _lock = new();
    private readonly IVmControl _control;
    private readonly IIrqLine _sci;
    private readonly int _s5SleepType;
    private readonly Func<long> _ticks;
    private readonly long _ticksPerSecond;
    private long _startTicks; // moved by LoadState so the PM timer continues from the saved count

    private ushort _status;
    private ushort _enable;
    private ushort _controlRegister = SciEnable;
    private long _lastTimerEpoch;
    private bool _sciLevel;
    private long _unsupportedSleepRequests;

    /// <summary>An ACPI PM block timed by <see cref="Stopwatch"/>, with S5 = <see cref="DefaultS5SleepType"/>.</summary>
    public AcpiPm(IVmControl control, IIrqLine sci)
        : this(control, sci, DefaultS5SleepType, Stopwatch.GetTimestamp, Stopwatch.Frequency)
    {
    }

    /// <param name="control">Receives the S5 power-off request.</param>
    /// <param name="sci">The SCI line (IRQ 9 on this platform).</param>
    /// <param name="s5SleepType">SLP_TYP value that means S5 (0-7; the DSDT's \_S5 must say the same).</param>
    /// <param name="monotonicTicks">A monotonic clock, e.g. <see cref="Stopwatch.GetTimestamp"/>.</param>
    /// <param name="ticksPerSecond">The clock's frequency, e.g. <see cref="Stopwatch.Frequency"/>.</param>
    public AcpiPm(IVmControl control, IIrqLine sci, int s5SleepType, Func<long> monotonicTicks, long ticksPerSecond)
    {
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(sci);
        ArgumentNullException.ThrowIfNull(monotonicTicks);
        if (s5SleepType is < 0 or > 7)
            throw new ArgumentOutOfRangeException(nameof(s5SleepType), s5SleepType, "SLP_TYP is a 3-bit field");
        ArgumentOutOfRangeException.ThrowIfLessThan(ticksPerSecond, 1);
        _control = control;
        _sci = sci;
        _s5SleepType = s5SleepType;
        _ticks = monotonicTicks;
        _ticksPerSecond = ticksPerSecond;
        _startTicks = monotonicTicks();
        EventBlock = new EventBlockDevice(this);
        ControlBlock = new ControlBlockDevice(this);
        Timer = new TimerDevice(this);
    }

    /// <summary>Length in ports of <see cref="EventBlock"/>.</summary>
    public const int EventBlockLength = 4;
    /// <summary>Length in ports of <see cref="ControlBlock"/>.</summary>
    public const int ControlBlockLength = 2;
    /// <summary>Length in ports of <see cref="Timer"/>.</summary>
    public const int TimerLength = 4;

    /// <summary>PM1a_EVT_BLK: offset 0-1 PM1_STS, offset 2-3 PM1_EN.</summary>
    public IBusDevice EventBlock { get; }

    /// <summary>PM1a_CNT_BLK: offset 0-1 PM1_CNT.</summary>
    public IBusDevice ControlBlock { get; }

    /// <summary>PM_TMR_BLK: offset 0-3 the timer value (read-only).</summary>
    public IBusDevice Timer { get; }

    /// <summary>Sleep requests for states other than S5 (ignored).</summary>
    public long UnsupportedSleepRequests => Volatile.Read(ref _unsupportedSleepRequests);

    /// <summary>The current PM timer value (24 bits).</summary>
    public uint TimerValue => (uint)(TimerCount() & 0xFF_FFFF);

    /// <summary>PM1_STS as the guest would read it now.</summary>
    public ushort Status
    {
        get
        {
            lock (_lock)
            {
                CheckTimerCarry();
                return _status;
            }
        }
    }

    /// <summary>PM1_EN.</summary>
    public ushort Enable
    {
        get { lock (_lock) return _enable; }
    }

    /// <summary>
    /// Presses the power button: sets PWRBTN_STS and raises the SCI if PWRBTN_EN is set, so an ACPI guest shuts
    /// down cleanly (the host's graceful-stop path).
    /// </summary>
    public void PressPowerButton()
    {
        lock (_lock)
        {
            _status |= PowerButtonStatus;
            UpdateSci();
        }
    }

    /// <inheritdoc/>
    public string StateKind => "acpi-pm";

    /// <inheritdoc/>
    /// <remarks>Version 1: PM1_STS, PM1_EN, PM1_CNT, the PM timer count (3.579545 MHz ticks, not truncated) and its
    /// last carry epoch. The timer goes on from the saved count, whatever the new host's clock says.</remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            CheckTimerCarry();
            writer.U16(_status);
            writer.U16(_enable);
            writer.U16(_controlRegister);
            writer.U64((ulong)TimerCount());
            writer.U64((ulong)_lastTimerEpoch);
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        ushort status = r.U16(), enable = r.U16(), control = r.U16();
        ulong count = r.U64(), epoch = r.U64();
        r.End();
        r.Check((status & ~StatusMask) == 0, $"PM1_STS 0x{status:x4} has bits this PM block does not have");
        r.Check((enable & ~EnableMask) == 0, $"PM1_EN 0x{enable:x4} has bits this PM block does not have");
        r.Check((control & ~(BusMasterReload | SleepTypeMask | SciEnable)) == 0 && (control & SciEnable) != 0,
            $"PM1_CNT 0x{control:x4} is not a value this PM block holds");
        // A count above ~80 000 years of uptime is hostile (and would overflow the tick arithmetic below).
        r.Check(count < (1UL << 53), $"PM timer count {count} is out of range");
        r.Check(epoch <= count >> 23, "the PM timer carry epoch is ahead of its count");
        // Rounded up: TimerCount rounds down, so a count rounded down here would read one less after every load
        // (found by fuzzing: save → load → save lost a tick whenever the clock is not a multiple of 3.579545 MHz).
        long hostTicks = (long)(((UInt128)count * (ulong)_ticksPerSecond + (TimerFrequency - 1)) / TimerFrequency);
        lock (_lock)
        {
            _status = status;
            _enable = enable;
            _controlRegister = control;
            Volatile.Write(ref _startTicks, _ticks() - hostTicks);
            _lastTimerEpoch = (long)epoch;
            UpdateSci();
        }
    }

    /// <summary>Timer ticks since construction, not truncated.</summary>
    private long TimerCount()
    {
        long elapsed = _ticks() - Volatile.Read(ref _startTicks);
        if (elapsed <= 0) return 0;
        return (long)((UInt128)(ulong)elapsed * TimerFrequency / (ulong)_ticksPerSecond);
    }

    private void CheckTimerCarry()
    {
        long epoch = TimerCount() >> 23;
        if (epoch == _lastTimerEpoch) return;
        _lastTimerEpoch = epoch;
        _status |= TimerStatus;
    }

    private void UpdateSci()
    {
        bool level = (_status & _enable & EnableMask) != 0;
        if (level == _sciLevel) return;
        _sciLevel = level;
        _sci.Set(level);
    }

    private byte ReadEventByte(ulong offset) => offset switch
    {
        0 => (byte)_status,
        1 => (byte)(_status >> 8),
        2 => (byte)_enable,
        3 => (byte)(_enable >> 8),
        _ => 0xFF,
    };

    private void WriteEventByte(ulong offset, byte value)
    {
        switch (offset)
        {
            case 0 or 1:
                int shift = 8 * (int)offset;
                _status &= (ushort)~((value << shift) & StatusMask); // write 1 to clear
                break;
            case 2 or 3:
                int s = 8 * ((int)offset - 2);
                _enable = (ushort)(((_enable & ~(0xFF << s)) | (value << s)) & EnableMask);
                break;
        }
    }

    private void WriteControl(ulong offset, ReadOnlySpan<byte> data)
    {
        // Merge the written bytes over the current value so byte-wide writes of either half work.
        int value = _controlRegister;
        bool any = false;
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            if (o > 1) continue;
            int shift = 8 * (int)o;
            value = (value & ~(0xFF << shift)) | (data[i] << shift);
            any = true;
        }
        if (!any) return;
        _controlRegister = (ushort)((value & (BusMasterReload | SleepTypeMask)) | SciEnable);
        if ((value & SleepEnable) == 0) return;
        int sleepType = (value & SleepTypeMask) >> SleepTypeShift;
        if (sleepType == _s5SleepType) _control.RequestPowerOff(PowerOffReason);
        else _unsupportedSleepRequests++;
    }

    private sealed class EventBlockDevice(AcpiPm pm) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            lock (pm._lock)
            {
                pm.CheckTimerCarry();
                pm.UpdateSci();
                for (int i = 0; i < data.Length; i++) data[i] = pm.ReadEventByte(offset + (ulong)i);
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            lock (pm._lock)
            {
                pm.CheckTimerCarry();
                for (int i = 0; i < data.Length; i++) pm.WriteEventByte(offset + (ulong)i, data[i]);
                pm.UpdateSci();
            }
        }
    }

    private sealed class ControlBlockDevice(AcpiPm pm) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            lock (pm._lock)
            {
                for (int i = 0; i < data.Length; i++)
                {
                    ulong o = offset + (ulong)i;
                    data[i] = o switch { 0 => (byte)pm._controlRegister, 1 => (byte)(pm._controlRegister >> 8), _ => 0xFF };
                }
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            lock (pm._lock) pm.WriteControl(offset, data);
        }
    }

    private sealed class TimerDevice(AcpiPm pm) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            uint value = pm.TimerValue; // lock-free: a pure function of the clock
            for (int i = 0; i < data.Length; i++)
            {
                ulong o = offset + (ulong)i;
                data[i] = o < 4 ? (byte)(value >> (8 * (int)o)) : (byte)0xFF;
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            // Read-only register: writes are ignored.
        }
    }
}
