using Csvmm.Devices.State;

namespace Csvmm.Devices.Legacy;

/// <summary>
/// The MC146818-style real-time clock and 128 bytes of CMOS RAM behind ports 0x70 (offset 0: index, bit 7 = NMI
/// disable) and 0x71 (offset 1: data). Register it as one 2-byte range.
/// </summary>
/// <remarks>
/// <para>Time: the clock registers (0x00 seconds ... 0x09 year, 0x32 century) are computed on every read from the
/// injected clock plus an offset, in the format register B selects (BCD or binary, 24-hour or 12-hour with bit 7 =
/// PM); B's daylight-saving bit is stored and ignored. A guest that sets the clock changes only the offset: while
/// B.SET is 1 reads and writes go to held copies that become the new time when SET is cleared; a write with SET
/// clear takes effect at once. Writes that do not form a valid date (bad BCD, month 13, year 0) leave the time
/// alone and count in <see cref="InvalidTimeWrites"/>. The day of week is derived from the date.</para>
/// <para>Register A: bit 7 (UIP) reads 1 during the last 244 µs of each second while the divider runs (bits 6-4 =
/// 010) and SET is clear; bits 6-0 are stored. Register C: the update-ended (UF), alarm (AF) and periodic (PF) flags
/// are worked out from how far the clock moved since they were last evaluated; IRQF is set when an enabled one is
/// set, and reading C returns and clears them. IRQ 8 follows IRQF as a level (raised when it sets, lowered when C is
/// read). Evaluation happens on every access to either port and on <see cref="Poll"/>; without a caller of Poll an
/// idle guest gets no interrupt until it touches the CMOS again (no host timer of its own). Periodic rates 1-15 are
/// honoured from register A with the 32.768 kHz time base; other divider settings stop the clock's flags. Register D
/// reads 0x80 (valid RAM and time).</para>
/// <para>Memory size bytes are set by the constructor as QEMU lays them out for SeaBIOS (see the constructor).</para>
/// </remarks>
public sealed class CmosRtc : IBusDevice, IStatefulDevice
{
    /// <summary>Number of I/O ports (index, data).</summary>
    public const int PortCount = 2;

    /// <summary>Bytes of CMOS RAM (including the clock registers).</summary>
    public const int Size = 128;

    /// <summary>Default start of the 32-bit MMIO hole: RAM beyond it lives above 4 GiB.</summary>
    public const ulong DefaultBelowFourGiBLimit = 0xC000_0000;

    // Register indices.
    private const int RegSeconds = 0x00, RegSecondsAlarm = 0x01, RegMinutes = 0x02, RegMinutesAlarm = 0x03,
        RegHours = 0x04, RegHoursAlarm = 0x05, RegDayOfWeek = 0x06, RegDayOfMonth = 0x07, RegMonth = 0x08,
        RegYear = 0x09, RegA = 0x0A, RegB = 0x0B, RegC = 0x0C, RegD = 0x0D, RegCentury = 0x32;

    // Register A.
    private const byte AUpdateInProgress = 0x80, ADividerMask = 0x70, ADividerNormal = 0x20, ARateMask = 0x0F;
    // Register B.
    private const byte BSet = 0x80, BPeriodicEnable = 0x40, BAlarmEnable = 0x20, BUpdateEnable = 0x10,
        BBinary = 0x04, B24Hour = 0x02;
    // Register C.
    private const byte CIrq = 0x80, CPeriodic = 0x40, CAlarm = 0x20, CUpdate = 0x10;
    private const byte CInterruptSources = CPeriodic | CAlarm | CUpdate; // same bit positions as B's enables

    private const long TicksPerSecond = TimeSpan.TicksPerSecond;
    private const long UipWindowTicks = 2_440; // 244 µs
    private const long SecondsPerDay = 86_400;
    private const int RtcClockHz = 32_768;

    private readonly Lock _lock = new();
    private readonly Func<DateTimeOffset> _clock;
    private readonly IIrqLine _irq;
    private readonly byte[] _cmos = new byte[Size];

    private byte _index;
    private bool _nmiDisabled;
    private long _offsetTicks;        // guest time minus host time, a whole number of seconds
    private long _lastEvaluatedTicks; // guest time at which C's flags were last brought up to date
    private byte _flags;              // register C
    private bool _irqLevel;
    private long _invalidTimeWrites;

    /// <param name="clock">Host time (the machine passes <c>() =&gt; DateTimeOffset.UtcNow</c>); must not go backwards by much.</param>
    /// <param name="ramSize">Guest RAM in bytes (below the hole plus above 4 GiB).</param>
    /// <param name="cpuCount">Number of vCPUs (1-256), stored at 0x5F as count - 1.</param>
    /// <param name="irq">IRQ 8.</param>
    /// <param name="belowFourGiBLimit">Where RAM below 4 GiB ends when the guest has more (the MMIO hole's start).</param>
    /// <remarks>
    /// CMOS layout set here: 0x10 = 0 (no floppy); 0x14 equipment = 0x06 (FPU, PS/2 mouse, no floppy, VGA);
    /// 0x15/0x16 base memory 640 KiB; 0x17/0x18 and 0x30/0x31 RAM above 1 MiB (below 4 GiB) in KiB, capped at 0xFFFF;
    /// 0x34/0x35 RAM above 16 MiB (below 4 GiB) in 64 KiB units, capped at 0xFFFF; 0x5B-0x5D RAM above 4 GiB in
    /// 64 KiB units (24 bits); 0x5F CPU count - 1; 0x3D/0x38 boot order hard disk, CD, floppy (SeaBIOS reads it
    /// when fw_cfg gives none); 0x2E/0x2F the checksum of 0x10-0x2D; register A = 0x26, B = 0x02 (24 h, BCD).
    /// </remarks>
    public CmosRtc(Func<DateTimeOffset> clock, ulong ramSize, int cpuCount, IIrqLine irq,
        ulong belowFourGiBLimit = DefaultBelowFourGiBLimit)
    {
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(irq);
        if (cpuCount is < 1 or > 256)
            throw new ArgumentOutOfRangeException(nameof(cpuCount), cpuCount, "the CMOS CPU count byte holds 1 to 256 CPUs");
        if (belowFourGiBLimit is < 0x100_0000 or > 0x1_0000_0000)
            throw new ArgumentOutOfRangeException(nameof(belowFourGiBLimit), belowFourGiBLimit, "the low RAM limit must lie in [16 MiB, 4 GiB]");
        _clock = clock;
        _irq = irq;

        _cmos[RegA] = 0x26;        // 32.768 kHz time base, 1024 Hz periodic rate
        _cmos[RegB] = B24Hour;     // BCD, 24 hours, no interrupts
        _cmos[0x10] = 0x00;        // no floppy drives
        _cmos[0x14] = 0x06;        // equipment: FPU present, PS/2 mouse, 00 = EGA/VGA, no floppy
        SetWord(0x15, 640);        // base memory in KiB

        ulong low = Math.Min(ramSize, belowFourGiBLimit);
        ulong high = ramSize - low;
        const ulong MiB = 1024 * 1024;
        ulong extendedKiB = low > MiB ? (low - MiB) / 1024 : 0;
        SetWord(0x17, (ushort)Math.Min(extendedKiB, 0xFFFF));
        SetWord(0x30, (ushort)Math.Min(extendedKiB, 0xFFFF));
        ulong above16M = low > 16 * MiB ? (low - 16 * MiB) / 0x10000 : 0;
        SetWord(0x34, (ushort)Math.Min(above16M, 0xFFFF));
        ulong above4G = Math.Min(high / 0x10000, 0xFF_FFFF);
        _cmos[0x5B] = (byte)above4G;
        _cmos[0x5C] = (byte)(above4G >> 8);
        _cmos[0x5D] = (byte)(above4G >> 16);
        _cmos[0x5F] = (byte)(cpuCount - 1);
        _cmos[0x3D] = 0x32;        // boot order: 1st hard disk (2), 2nd CD (3)
        _cmos[0x38] = 0x10;        // 3rd floppy (1); bit 0 clear = check the floppy boot signature

        int sum = 0;
        for (int i = 0x10; i <= 0x2D; i++) sum += _cmos[i];
        _cmos[0x2E] = (byte)(sum >> 8);
        _cmos[0x2F] = (byte)sum;

        _lastEvaluatedTicks = GuestTicks();
    }

    /// <inheritdoc/>
    public string StateKind => "cmos-rtc";

    /// <inheritdoc/>
    /// <remarks>Version 1: the 128 bytes of CMOS RAM (NVRAM and held clock registers), the index, the NMI mask, the
    /// guest clock's offset from host time, the guest time register C was last brought up to date at, and register C.
    /// Like QEMU's default RTC (base=utc, clock=host), the restored clock keeps the saved offset from host time.</remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            Evaluate();
            writer.Bytes(_cmos);
            writer.U8(_index);
            writer.Bool(_nmiDisabled);
            writer.U64((ulong)_offsetTicks);
            writer.U64((ulong)_lastEvaluatedTicks);
            writer.U8(_flags);
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        ReadOnlySpan<byte> cmos = r.Bytes(Size);
        byte index = r.U8();
        bool nmi = r.Bool();
        long offset = (long)r.U64(), lastEvaluated = (long)r.U64();
        byte flags = r.U8();
        r.End();
        r.Check(cmos.Length == Size, $"{cmos.Length} bytes of CMOS RAM, not {Size}");
        r.Check(index < Size, $"CMOS index 0x{index:x2} is past its 128 bytes");
        r.Check((flags & ~(CIrq | CInterruptSources)) == 0, $"register C 0x{flags:x2} has bits the RTC does not set");
        long span = DateTime.MaxValue.Ticks;
        r.Check(offset > -span && offset < span, "the guest clock offset is more than the calendar holds");
        r.Check(lastEvaluated >= 0 && lastEvaluated <= span, "the last evaluation time is not a date");
        lock (_lock)
        {
            cmos.CopyTo(_cmos);
            _index = index;
            _nmiDisabled = nmi;
            _offsetTicks = offset;
            // Flags are worked out from how far the clock moved since: never from a point in the guest's future.
            _lastEvaluatedTicks = Math.Min(lastEvaluated, GuestTicks());
            _flags = flags;
            UpdateIrq();
        }
    }

    /// <summary>Whether the guest last wrote the index port with bit 7 set (NMI masked).</summary>
    public bool NmiDisabled
    {
        get { lock (_lock) return _nmiDisabled; }
    }

    /// <summary>Guest time minus host time, as set by the guest writing the clock.</summary>
    public TimeSpan GuestClockOffset
    {
        get { lock (_lock) return TimeSpan.FromTicks(_offsetTicks); }
    }

    /// <summary>Clock writes that did not form a valid date and were ignored.</summary>
    public long InvalidTimeWrites => Volatile.Read(ref _invalidTimeWrites);

    /// <summary>
    /// Brings register C's flags up to date and raises IRQ 8 if an enabled one became set. The machine may call this
    /// from a host timer (e.g. every few ms) so that alarm / update / periodic interrupts arrive without guest polling.
    /// </summary>
    public void Poll()
    {
        lock (_lock) Evaluate();
    }

    /// <summary>The raw CMOS byte at <paramref name="index"/> (0-127) as stored, without the clock (diagnostics, tests).</summary>
    public byte PeekRaw(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Size, nameof(index));
        lock (_lock) return _cmos[index];
    }

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            Evaluate();
            for (int i = 0; i < data.Length; i++)
            {
                ulong port = offset + (ulong)i;
                // The index port is write-only and reads 0xFF, as on QEMU.
                data[i] = port == 1 ? ReadRegister(_index) : (byte)0xFF;
            }
        }
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            Evaluate();
            for (int i = 0; i < data.Length; i++)
            {
                ulong port = offset + (ulong)i;
                if (port == 0)
                {
                    _index = (byte)(data[i] & 0x7F);
                    _nmiDisabled = (data[i] & 0x80) != 0;
                }
                else if (port == 1)
                {
                    WriteRegister(_index, data[i]);
                }
            }
        }
    }

    private bool SetMode => (_cmos[RegB] & BSet) != 0;
    private bool Binary => (_cmos[RegB] & BBinary) != 0;
    private bool Hours24 => (_cmos[RegB] & B24Hour) != 0;
    private bool Running => (_cmos[RegA] & ADividerMask) == ADividerNormal && !SetMode;

    private static bool IsTimeRegister(int index) => index is RegSeconds or RegMinutes or RegHours or RegDayOfWeek
        or RegDayOfMonth or RegMonth or RegYear or RegCentury;

    private byte ReadRegister(int index)
    {
        switch (index)
        {
            case RegA:
                long t = GuestTicks();
                bool uip = Running && t % TicksPerSecond >= TicksPerSecond - UipWindowTicks;
                return (byte)(_cmos[RegA] | (uip ? AUpdateInProgress : 0));
            case RegC:
                byte c = _flags;
                _flags = 0;
                UpdateIrq();
                return c;
            case RegD:
                return 0x80; // valid RAM and time
            default:
                if (IsTimeRegister(index) && !SetMode) return EncodeTimeRegister(index, new DateTime(GuestTicks()));
                return _cmos[index];
        }
    }

    private void WriteRegister(int index, byte value)
    {
        switch (index)
        {
            case RegA:
                _cmos[RegA] = (byte)(value & 0x7F);
                return;
            case RegB:
                bool wasSet = SetMode;
                bool set = (value & BSet) != 0;
                if (set && !wasSet)
                {
                    HoldTime();
                    value &= unchecked((byte)~BUpdateEnable); // SET clears UIE
                }
                if (!set && wasSet)
                {
                    _cmos[RegB] = value; // decode the held registers in the format being switched to
                    CommitHeldTime();
                    return;
                }
                _cmos[RegB] = value;
                Evaluate();
                return;
            case RegC or RegD:
                return; // read-only
            default:
                if (IsTimeRegister(index) && !SetMode)
                {
                    HoldTime();
                    _cmos[index] = value;
                    CommitHeldTime();
                    return;
                }
                _cmos[index] = value;
                return;
        }
    }

    /// <summary>Copies the current time into the clock registers (the "held" copy used while SET is 1).</summary>
    private void HoldTime()
    {
        var now = new DateTime(GuestTicks());
        _cmos[RegSeconds] = EncodeTimeRegister(RegSeconds, now);
        _cmos[RegMinutes] = EncodeTimeRegister(RegMinutes, now);
        _cmos[RegHours] = EncodeTimeRegister(RegHours, now);
        _cmos[RegDayOfWeek] = EncodeTimeRegister(RegDayOfWeek, now);
        _cmos[RegDayOfMonth] = EncodeTimeRegister(RegDayOfMonth, now);
        _cmos[RegMonth] = EncodeTimeRegister(RegMonth, now);
        _cmos[RegYear] = EncodeTimeRegister(RegYear, now);
        _cmos[RegCentury] = EncodeTimeRegister(RegCentury, now);
    }

    /// <summary>Makes the held clock registers the guest's time, if they form a valid date.</summary>
    private void CommitHeldTime()
    {
        if (!TryDecode(_cmos[RegSeconds], out int second) || second > 59
            || !TryDecode(_cmos[RegMinutes], out int minute) || minute > 59
            || !TryDecodeHour(_cmos[RegHours], out int hour)
            || !TryDecode(_cmos[RegDayOfMonth], out int day)
            || !TryDecode(_cmos[RegMonth], out int month) || month is < 1 or > 12
            || !TryDecode(_cmos[RegYear], out int year) || year > 99
            || !TryDecode(_cmos[RegCentury], out int century) || century > 99)
        {
            _invalidTimeWrites++;
            return;
        }
        int fullYear = century * 100 + year;
        if (fullYear < 1 || day < 1 || day > DateTime.DaysInMonth(fullYear, month))
        {
            _invalidTimeWrites++;
            return;
        }
        long guestTicks = new DateTime(fullYear, month, day, hour, minute, second).Ticks;
        long hostTicks = _clock().UtcTicks;
        _offsetTicks = guestTicks - (hostTicks - hostTicks % TicksPerSecond); // keep the host's sub-second phase
        _lastEvaluatedTicks = GuestTicks();
    }

    private long GuestTicks()
    {
        long host = _clock().UtcTicks;
        long max = DateTime.MaxValue.Ticks;
        // Clamp rather than throw if a guest set the clock to the end of year 9999 and time moved on.
        if (_offsetTicks > 0 && host > max - _offsetTicks) return max;
        long t = host + _offsetTicks;
        return t < 0 ? 0 : t;
    }

    private byte EncodeTimeRegister(int index, DateTime time) => index switch
    {
        RegSeconds => Encode(time.Second),
        RegMinutes => Encode(time.Minute),
        RegHours => EncodeHour(time.Hour),
        RegDayOfWeek => Encode((int)time.DayOfWeek + 1), // 1 = Sunday
        RegDayOfMonth => Encode(time.Day),
        RegMonth => Encode(time.Month),
        RegYear => Encode(time.Year % 100),
        RegCentury => Encode(time.Year / 100),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    private byte Encode(int value) => Binary ? (byte)value : (byte)((value / 10) << 4 | value % 10);

    private byte EncodeHour(int hour)
    {
        if (Hours24) return Encode(hour);
        int h12 = hour % 12 == 0 ? 12 : hour % 12;
        return (byte)(Encode(h12) | (hour >= 12 ? 0x80 : 0));
    }

    private bool TryDecode(byte raw, out int value)
    {
        if (Binary)
        {
            value = raw;
            return true;
        }
        int hi = raw >> 4, lo = raw & 0x0F;
        value = hi * 10 + lo;
        return hi <= 9 && lo <= 9;
    }

    private bool TryDecodeHour(byte raw, out int hour)
    {
        if (Hours24) return TryDecode(raw, out hour) && hour <= 23;
        if (!TryDecode((byte)(raw & 0x7F), out int h12) || h12 is < 1 or > 12)
        {
            hour = 0;
            return false;
        }
        hour = h12 % 12 + ((raw & 0x80) != 0 ? 12 : 0);
        return true;
    }

    // ---- register C -----------------------------------------------------------------------------------

    /// <summary>Sets UF/AF/PF for the time that passed since the last evaluation; raises IRQF for enabled ones.</summary>
    private void Evaluate()
    {
        long now = GuestTicks();
        long last = _lastEvaluatedTicks;
        _lastEvaluatedTicks = now;
        if (!Running || now <= last) return;

        long lastSecond = last / TicksPerSecond, nowSecond = now / TicksPerSecond;
        if (nowSecond > lastSecond)
        {
            _flags |= CUpdate;
            if (AlarmMatchesBetween(lastSecond + 1, nowSecond)) _flags |= CAlarm;
        }
        int rate = _cmos[RegA] & ARateMask;
        if (rate != 0 && PeriodIndex(now, rate) > PeriodIndex(last, rate)) _flags |= CPeriodic;

        if ((_flags & _cmos[RegB] & CInterruptSources) != 0) _flags |= CIrq;
        UpdateIrq();
    }

    /// <summary>Which period of the periodic interrupt <paramref name="ticks"/> falls in (32.768 kHz time base).</summary>
    private static long PeriodIndex(long ticks, int rate)
    {
        // Rates 1 and 2 run at 256 and 128 Hz (the same as 8 and 9); rate n otherwise divides 32768 Hz by 2^(n-1).
        int shift = rate <= 2 ? rate + 6 : rate - 1;
        long cycles = ticks / TicksPerSecond * RtcClockHz + ticks % TicksPerSecond * RtcClockHz / TicksPerSecond;
        return cycles >> shift;
    }

    /// <summary>Whether the alarm matches any whole second in [<paramref name="first"/>, <paramref name="last"/>].</summary>
    private bool AlarmMatchesBetween(long first, long last)
    {
        if (!TryAlarmField(_cmos[RegSecondsAlarm], isHour: false, out int alarmSecond)
            || !TryAlarmField(_cmos[RegMinutesAlarm], isHour: false, out int alarmMinute)
            || !TryAlarmField(_cmos[RegHoursAlarm], isHour: true, out int alarmHour))
            return false; // an invalid alarm time never matches
        if (last - first + 1 >= SecondsPerDay) return true; // every valid alarm time comes round within a day

        for (long s = first; s <= last;)
        {
            long ofDay = s % SecondsPerDay;
            int hour = (int)(ofDay / 3600), minute = (int)(ofDay / 60 % 60), second = (int)(ofDay % 60);
            long lastInMinute = Math.Min(59, second + (last - s));
            if ((alarmHour < 0 || alarmHour == hour) && (alarmMinute < 0 || alarmMinute == minute)
                && (alarmSecond < 0 || (alarmSecond >= second && alarmSecond <= lastInMinute)))
                return true;
            s += 60 - second; // next minute
        }
        return false;
    }

    /// <summary>Decodes an alarm register: -1 for "don't care" (top two bits set), false if invalid.</summary>
    private bool TryAlarmField(byte raw, bool isHour, out int value)
    {
        if ((raw & 0xC0) == 0xC0)
        {
            value = -1;
            return true;
        }
        if (isHour) return TryDecodeHour(raw, out value);
        return TryDecode(raw, out value) && value <= 59;
    }

    private void UpdateIrq()
    {
        bool level = (_flags & CIrq) != 0;
        if (level == _irqLevel) return;
        _irqLevel = level;
        _irq.Set(level);
    }

    private void SetWord(int index, ushort value)
    {
        _cmos[index] = (byte)value;
        _cmos[index + 1] = (byte)(value >> 8);
    }
}
