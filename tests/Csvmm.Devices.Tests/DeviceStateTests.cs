using Csvmm.Devices.Legacy;
using Csvmm.Devices.State;

namespace Csvmm.Devices.Tests;

/// <summary>The device-state codec: a self-checking record that refuses anything but an intact state of the right kind.</summary>
public sealed class DeviceStateRecordTests
{
    [Fact]
    public void Crc32c_matches_the_standard_check_value()
    {
        Assert.Equal(0xE3069283u, DeviceStateRecord.Crc32C("123456789"u8));
        Assert.Equal(0u, DeviceStateRecord.Crc32C([]));
    }

    [Fact]
    public void Reader_refuses_truncation_bad_flags_long_blocks_and_trailing_bytes()
    {
        Assert.Throws<DeviceStateException>(() => new StateReader([1, 2, 3], "t").U32());
        Assert.Throws<DeviceStateException>(() => new StateReader([2], "t").Bool());
        Assert.Throws<DeviceStateException>(() => new StateReader([5, 0, 0, 0, 1, 2, 3, 4, 5], "t").Bytes(4));
        Assert.Throws<DeviceStateException>(() => new StateReader([0xFF, 0xFF, 0xFF, 0xFF], "t").Bytes(int.MaxValue));
        var e = Assert.Throws<DeviceStateException>(() =>
        {
            var r = new StateReader([1, 2], "t");
            r.U8();
            r.End();
        });
        Assert.Equal("t state has 1 unexpected bytes after offset 1", e.Message);
    }
}

/// <summary>The 16550's state survives save and load into a freshly built UART, and a bad state changes nothing.</summary>
public sealed class Serial16550StateTests
{
    private const ulong Data = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;

    private static (Serial16550 Uart, FakeIrqLine Irq) Programmed()
    {
        var irq = new FakeIrqLine();
        var uart = new Serial16550(irq, new RecordingOutput());
        uart.WriteByte(Lcr, 0x80);        // DLAB: divisor 0x0102
        uart.WriteByte(Data, 0x02);
        uart.WriteByte(Ier, 0x01);
        uart.WriteByte(Lcr, 0x03);        // 8N1
        uart.WriteByte(Fcr, 0x81);        // FIFOs on, trigger level 8
        uart.WriteByte(Mcr, 0x0B);        // DTR, RTS, OUT2
        uart.WriteByte(Ier, 0x05);        // RX data + line status
        uart.WriteByte(Scr, 0x5A);
        Assert.Equal(3, uart.EnqueueInput("abc"u8));
        return (uart, irq);
    }

    /// <summary>Every register as the guest reads it, in an order that consumes the destructive ones last.</summary>
    private static byte[] GuestView(Serial16550 uart)
    {
        var view = new List<byte> { uart.ReadByte(Ier), uart.ReadByte(Lcr), uart.ReadByte(Mcr), uart.ReadByte(Scr), uart.ReadByte(Iir) };
        uart.WriteByte(Lcr, 0x83);
        view.Add(uart.ReadByte(Data));
        view.Add(uart.ReadByte(Ier));
        uart.WriteByte(Lcr, 0x03);
        view.Add(uart.ReadByte(Msr));
        view.Add(uart.ReadByte(Lsr));
        for (int i = 0; i < 4; i++) view.Add(uart.ReadByte(Data));
        view.Add(uart.ReadByte(Lsr));
        view.Add(uart.ReadByte(Iir));
        return [.. view];
    }

    [Fact]
    public void A_restored_uart_reads_exactly_as_the_original_and_raises_its_line()
    {
        var (original, originalIrq) = Programmed();
        byte[] record = DeviceStateRecord.Save(original);

        var irq = new FakeIrqLine();
        var restored = new Serial16550(irq, new RecordingOutput());
        DeviceStateRecord.Load(restored, record);
        Assert.True(originalIrq.Level);
        Assert.True(irq.Level); // pending RX data with IER.RDA and OUT2: the new line is driven high at once

        byte[] expected = GuestView(original), actual = GuestView(restored);
        Assert.Equal(expected, actual);
        Assert.Equal((byte)'a', actual[9]);        // the queued input survived, in order
        Assert.Equal(0xCC, expected[4]);           // FIFOs enabled, RX timeout (3 bytes < trigger 8)
        Assert.False(irq.Level);                   // drained: the line went low as on the original
    }

    [Fact]
    public void A_save_of_a_restored_uart_is_the_same_record()
    {
        var (original, _) = Programmed();
        byte[] record = DeviceStateRecord.Save(original);
        var restored = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        DeviceStateRecord.Load(restored, record);
        Assert.Equal(record, DeviceStateRecord.Save(restored));
    }

    [Fact]
    public void Every_truncation_and_every_flipped_byte_is_refused_and_changes_nothing()
    {
        var (original, _) = Programmed();
        byte[] record = DeviceStateRecord.Save(original);
        var target = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        byte[] before = DeviceStateRecord.Save(target);
        for (int length = 0; length < record.Length; length++)
            Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(target, record.AsSpan(0, length)));
        for (int i = 0; i < record.Length; i++)
        {
            byte[] bad = (byte[])record.Clone();
            bad[i] ^= 0x10;
            Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(target, bad));
        }
        Assert.Equal(before, DeviceStateRecord.Save(target));
    }

    [Fact]
    public void Impossible_values_are_refused_even_with_a_valid_checksum()
    {
        var uart = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        var w = new StateWriter();
        foreach (byte b in new byte[] { 0xFF, 0, 0, 0, 0x0C, 0, 0, 0xB0, 0, 0 }) w.U8(b); // IER 0xFF
        w.Bool(false);
        w.U8(1);
        w.Bool(false);
        w.Bytes([]);
        var e = Assert.Throws<DeviceStateException>(() => uart.LoadState(w.Written, 1));
        Assert.Equal("serial16550 state: IER 0xff has bits no 16550 has", e.Message);

        var big = new StateWriter();
        foreach (byte b in new byte[] { 0, 0, 0, 0, 0x0C, 0, 0, 0xB0, 0, 0 }) big.U8(b);
        big.Bool(true);
        big.U8(1);
        big.Bool(false);
        big.Bytes(new byte[65]); // more than the 64-byte receive queue
        Assert.Throws<DeviceStateException>(() => uart.LoadState(big.Written, 1));
        Assert.Throws<DeviceStateException>(() => uart.LoadState(w.Written, 2)); // a version from the future
    }

    [Fact]
    public void A_state_of_another_kind_is_refused()
    {
        var (original, _) = Programmed();
        byte[] record = DeviceStateRecord.Save(new OtherKind(original));
        var e = Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(original, record));
        Assert.Equal("serial16550 state: the record holds a 'other' state", e.Message);
    }

    private sealed class OtherKind(Serial16550 inner) : IStatefulDevice
    {
        public string StateKind => "other";
        public ushort StateVersion => 1;
        public void SaveState(StateWriter writer) => inner.SaveState(writer);
        public void LoadState(ReadOnlySpan<byte> state, ushort version) { }
    }
}

/// <summary>What every stateful device must do: re-save the same record after a load, refuse every truncation and flipped byte without changing.</summary>
internal static class StateAssert
{
    public static void RoundTripsAndRefusesDamage(IStatefulDevice original, Func<IStatefulDevice> fresh)
    {
        byte[] record = DeviceStateRecord.Save(original);
        IStatefulDevice restored = fresh();
        DeviceStateRecord.Load(restored, record);
        Assert.Equal(record, DeviceStateRecord.Save(restored));

        IStatefulDevice target = fresh();
        byte[] before = DeviceStateRecord.Save(target);
        for (int length = 0; length < record.Length; length++)
            Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(target, record.AsSpan(0, length)));
        for (int i = 0; i < record.Length; i++)
        {
            byte[] bad = (byte[])record.Clone();
            bad[i] ^= 0x01;
            Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(target, bad));
        }
        Assert.Equal(before, DeviceStateRecord.Save(target));
    }
}

public sealed class CmosRtcStateTests
{
    private DateTimeOffset _now = new(2024, 3, 15, 13, 45, 56, 500, TimeSpan.Zero);

    private CmosRtc Create(FakeIrqLine? irq = null) => new(() => _now, 64 << 20, 2, irq ?? new FakeIrqLine());

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

    [Fact]
    public void The_guest_clock_nvram_and_a_pending_interrupt_survive()
    {
        var rtc = Create();
        Set(rtc, 0x0B, 0x82);   // SET, 24 h, BCD: hold the clock
        Set(rtc, 0x09, 0x99);   // year 99
        Set(rtc, 0x32, 0x19);   // century 19: 1999
        Set(rtc, 0x0B, 0x12);   // SET off (the new time takes effect), update-ended interrupt on
        Set(rtc, 0x40, 0xA5);   // a byte of NVRAM
        _now += TimeSpan.FromSeconds(1.2); // a second boundary passes: UF, IRQF
        byte[] record = DeviceStateRecord.Save(rtc);

        var irq = new FakeIrqLine();
        var restored = Create(irq);
        _now += TimeSpan.FromHours(3); // restored later on the host: the guest clock keeps its offset
        DeviceStateRecord.Load(restored, record);
        Assert.True(irq.Level);                          // IRQ 8 is pending again on the new line
        Assert.Equal(0x99, Get(restored, 0x09));
        Assert.Equal(0x19, Get(restored, 0x32));
        Assert.Equal(0xA5, Get(restored, 0x40));
        Assert.Equal(0x90, Get(restored, 0x0C) & 0x90); // IRQF | UF, read-to-clear
        Assert.False(irq.Level);
        Assert.Equal(rtc.GuestClockOffset, restored.GuestClockOffset);
    }

    [Fact]
    public void Damage_is_refused() => StateAssert.RoundTripsAndRefusesDamage(Create(), () => Create());
}

public sealed class I8042StateTests
{
    private static I8042 Create(FakeIrqLine? kbd = null) => new(new FakeVmControl(), kbd ?? new FakeIrqLine(), new FakeIrqLine());

    [Fact]
    public void Leds_command_byte_and_a_pending_reply_survive()
    {
        var kbc = Create();
        kbc.DataPort.WriteByte(0, 0xED);      // set LEDs ...
        Assert.Equal(0xFA, kbc.DataPort.ReadByte(0));
        kbc.DataPort.WriteByte(0, 0x05);      // ... scroll + caps
        Assert.Equal(0xFA, kbc.DataPort.ReadByte(0));
        kbc.CommandPort.WriteByte(0, 0x60);   // write the command byte: no translation, interrupts on
        kbc.DataPort.WriteByte(0, 0x03);
        kbc.DataPort.WriteByte(0, 0xF2);      // identify: ACK, 0xAB, 0x83 queued, IRQ 1 raised
        var irq = new FakeIrqLine();
        var restored = Create(irq);
        DeviceStateRecord.Load(restored, DeviceStateRecord.Save(kbc));
        Assert.True(irq.Level);
        Assert.Equal(0x05, restored.KeyboardLeds);
        Assert.Equal(0xFA, restored.DataPort.ReadByte(0));
        Assert.Equal(0xAB, restored.DataPort.ReadByte(0));
        Assert.Equal(0x83, restored.DataPort.ReadByte(0));
        restored.CommandPort.WriteByte(0, 0x20); // read the command byte back
        Assert.Equal(0x03, restored.DataPort.ReadByte(0));
    }

    [Fact]
    public void Damage_is_refused()
    {
        var kbc = Create();
        kbc.DataPort.WriteByte(0, 0xF2);
        StateAssert.RoundTripsAndRefusesDamage(kbc, () => Create());
    }
}

public sealed class AcpiPmStateTests
{
    private long _ticks = 1_000_000;

    private AcpiPm Create(FakeIrqLine? sci = null) => new(new FakeVmControl(), sci ?? new FakeIrqLine(), 5, () => _ticks, AcpiPm.TimerFrequency);

    [Fact]
    public void The_pm_timer_goes_on_from_the_saved_count_and_the_sci_is_pending_again()
    {
        var pm = Create();
        pm.EventBlock.Write(2, [0x00, 0x01]); // PM1_EN: power button
        pm.PressPowerButton();
        _ticks += 123_456;
        uint before = pm.TimerValue;
        byte[] record = DeviceStateRecord.Save(pm);

        _ticks += 50_000_000; // the new process starts much later on the host clock
        var sci = new FakeIrqLine();
        var restored = Create(sci);
        DeviceStateRecord.Load(restored, record);
        Assert.Equal(before, restored.TimerValue);
        Assert.True(sci.Level);
        Assert.Equal(AcpiPm.PowerButtonStatus, restored.Status & AcpiPm.PowerButtonStatus);
        _ticks += 10;
        Assert.Equal(before + 10, restored.TimerValue);
    }

    [Fact]
    public void Damage_is_refused() => StateAssert.RoundTripsAndRefusesDamage(Create(), () => Create());
}

/// <summary>A machine's devices saved and loaded together, all or nothing.</summary>
public sealed class DeviceStateSetTests
{
    private DateTimeOffset _now = new(2024, 3, 15, 13, 45, 56, TimeSpan.Zero);

    private (DeviceStateSet Set, Serial16550 Uart, CmosRtc Rtc) Machine()
    {
        var uart = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        var rtc = new CmosRtc(() => _now, 64 << 20, 1, new FakeIrqLine());
        var set = new DeviceStateSet();
        set.Add("com1", uart);
        set.Add("cmos", rtc);
        return (set, uart, rtc);
    }

    private static void Poke(CmosRtc rtc, byte index, byte value)
    {
        rtc.WriteByte(0, index);
        rtc.WriteByte(1, value);
    }

    [Fact]
    public void A_whole_machine_round_trips()
    {
        var (set, uart, rtc) = Machine();
        uart.WriteByte(7, 0x42);
        Poke(rtc, 0x40, 0x99);
        byte[] blob = set.SaveAll();
        var (other, uart2, rtc2) = Machine();
        other.LoadAll(blob);
        Assert.Equal(0x42, uart2.ReadByte(7));
        Assert.Equal(DeviceStateRecord.Save(rtc), DeviceStateRecord.Save(rtc2));
        Assert.Equal(blob, other.SaveAll());
    }

    [Fact]
    public void A_device_that_refuses_its_state_leaves_every_device_as_it_was()
    {
        var (set, uart, rtc) = Machine();
        uart.WriteByte(7, 0x42);
        byte[] blob = set.SaveAll();
        // The same ids, but the second device is a 16550 now: its record is a serial16550 one, the cmos refuses it.
        var uartB = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        var cmosImpostor = new Serial16550(new FakeIrqLine(), new RecordingOutput());
        var bad = new DeviceStateSet();
        bad.Add("com1", uartB);
        bad.Add("cmos", cmosImpostor);
        uartB.WriteByte(7, 0x11);
        var e = Assert.Throws<DeviceStateException>(() => bad.LoadAll(blob));
        Assert.StartsWith("cmos: ", e.Message);
        Assert.Equal(0x11, uartB.ReadByte(7)); // com1 had been loaded (0x42), and was put back
    }

    [Fact]
    public void Another_machines_devices_and_damage_are_refused()
    {
        var (set, _, _) = Machine();
        byte[] blob = set.SaveAll();
        var small = new DeviceStateSet();
        small.Add("com1", new Serial16550(new FakeIrqLine(), new RecordingOutput()));
        Assert.Contains("holds 2 devices, this machine has 1", Assert.Throws<DeviceStateException>(() => small.LoadAll(blob)).Message);
        var renamed = new DeviceStateSet();
        renamed.Add("com2", new Serial16550(new FakeIrqLine(), new RecordingOutput()));
        renamed.Add("cmos", new CmosRtc(() => _now, 64 << 20, 1, new FakeIrqLine()));
        Assert.Contains("'com1', which this machine does not have", Assert.Throws<DeviceStateException>(() => renamed.LoadAll(blob)).Message);
        var (target, _, _) = Machine();
        for (int length = 0; length < blob.Length; length += 7)
            Assert.Throws<DeviceStateException>(() => target.LoadAll(blob.AsSpan(0, length)));
        for (int i = 0; i < blob.Length; i++)
        {
            byte[] flipped = (byte[])blob.Clone();
            flipped[i] ^= 0x80;
            Assert.Throws<DeviceStateException>(() => target.LoadAll(flipped));
        }
    }

    [Fact]
    public void Ids_are_unique_and_printable()
    {
        var set = new DeviceStateSet();
        set.Add("com1", new Serial16550(new FakeIrqLine(), new RecordingOutput()));
        Assert.Throws<ArgumentException>(() => set.Add("com1", new Serial16550(new FakeIrqLine(), new RecordingOutput())));
        Assert.Throws<ArgumentException>(() => set.Add("a b", new Serial16550(new FakeIrqLine(), new RecordingOutput())));
        Assert.Equal(["com1"], set.Ids);
    }
}
