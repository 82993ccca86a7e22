using Csvmm.Devices;
using Csvmm.Devices.Legacy;
using Csvmm.Devices.State;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// The legacy PC devices a guest reaches by port I/O: the 16550 UART, the CMOS RTC, the i8042 keyboard controller and
/// the ACPI PM block (event, control and timer registers), with deterministic fake clocks the input advances.
/// </summary>
/// <remarks>
/// <para>Fresh devices each run: UART with a counting sink, CMOS for 2 GiB of RAM and 2 CPUs, i8042, ACPI PM with
/// S5 = 5; IRQ lines and the VM control are counting fakes. The RTC's host clock starts at 2024-02-29 23:59:58 UTC
/// and the PM timer's monotonic clock at 0; both only move by TICK. Reads past the input's end give zeroes.</para>
/// <para>Input encoding. Byte 0: bit 0 the PM block's clock counts at 10^9 Hz (Linux's Stopwatch.Frequency, as the
/// machine builds it) instead of the PM timer's own 3.579545 MHz. Then operations until the input ends (at most 1024),
/// an opcode byte (mod 7) and its operands:</para>
/// <list type="bullet">
/// <item>0 IO what:u8 off:u8 [value]: what bits 0-2 the register block (0 UART, 1 CMOS, 2 i8042 data, 3 i8042
/// command, 4 PM1 event, 5 PM1 control, 6 PM timer, 7 UART again), bit 3 write, bits 4-5 width 1/2/4/1; off mod the
/// block's length + 1 (one past the end); a write's value is width bytes.</item>
/// <item>1 TICK n:u16: both clocks forward by the low 14 bits times 100 ns / 1 ms / 1 s / 1 h (bits 14-15).</item>
/// <item>2 INPUT n:u8, then n+1 bytes: host input offered to the UART's receiver.</item>
/// <item>3 POLL: the RTC's host-timer poll.</item>
/// <item>4 BUTTON: the power button pressed.</item>
/// <item>5 STATE which:u8: one device's (mod 4: UART, CMOS, i8042, PM) state round trip, as below.</item>
/// <item>6 TX n:u8, then n+1 bytes: each written to UART offset 0 (THR, or the divisor latch with DLAB).</item>
/// </list>
/// <para>Invariants: no exception escapes; for each device (after STATE, and for all four at the end), a record saved
/// with <see cref="DeviceStateRecord.Save"/> loads back into the device (<see cref="DeviceStateRecord.Load"/>), saving
/// again gives the identical record, and a fresh device of the same configuration that loads it saves it identically.</para>
/// </remarks>
public sealed class LegacyPortsTarget : IFuzzTarget
{
    public string Name => "legacy-ports";
    public string Description => "16550 UART, CMOS RTC, i8042 and ACPI PM port traffic, with state save/load round trips";

    private const int MaxOps = 1024;
    private const ulong RamSize = 2UL << 30;
    private const int Cpus = 2;
    private static readonly DateTimeOffset ClockStart = new(2024, 2, 29, 23, 59, 58, TimeSpan.Zero);
    private static readonly long[] TickUnits = [1, TimeSpan.TicksPerMillisecond, TimeSpan.TicksPerSecond, TimeSpan.TicksPerHour];

    private sealed class CountingIrq : IIrqLine
    {
        public long Sets;
        public void Set(bool level) => Sets++;
    }

    private sealed class CountingControl : IVmControl
    {
        public long Resets, PowerOffs;
        public void RequestReset(string reason) => Resets++;
        public void RequestPowerOff(string reason) => PowerOffs++;
    }

    private sealed class CountingOutput : ISerialOutput
    {
        public long Bytes;
        public void Write(byte value) => Bytes++;
    }

    /// <summary>One run's devices and the fake clocks they read (100 ns units since the start).</summary>
    private sealed class Machine
    {
        public long Elapsed;
        public readonly long PmFrequency;
        public readonly CountingControl Control = new();
        public readonly Serial16550 Uart;
        public readonly CmosRtc Cmos;
        public readonly I8042 Kbc;
        public readonly AcpiPm Pm;
        public readonly IBusDevice[] Blocks;
        public readonly int[] Lengths = [8, CmosRtc.PortCount, 1, 1, AcpiPm.EventBlockLength, AcpiPm.ControlBlockLength, AcpiPm.TimerLength, 8];

        public Machine(bool nanosecondClock)
        {
            PmFrequency = nanosecondClock ? 1_000_000_000 : AcpiPm.TimerFrequency;
            Uart = NewUart();
            Cmos = NewCmos();
            Kbc = NewKbc();
            Pm = NewPm();
            Blocks = [Uart, Cmos, Kbc.DataPort, Kbc.CommandPort, Pm.EventBlock, Pm.ControlBlock, Pm.Timer, Uart];
        }

        public DateTimeOffset Now() => ClockStart.AddTicks(Elapsed);

        /// <summary>The PM clock in its own units: elapsed × frequency / 10^7, exactly (no rounding of its own).</summary>
        public long PmTicks() => (long)((UInt128)(ulong)Elapsed * (ulong)PmFrequency / (ulong)TimeSpan.TicksPerSecond);

        public Serial16550 NewUart() => new(new CountingIrq(), new CountingOutput());
        public CmosRtc NewCmos() => new(Now, RamSize, Cpus, new CountingIrq());
        public I8042 NewKbc() => new(Control, new CountingIrq(), new CountingIrq());
        public AcpiPm NewPm() => new(Control, new CountingIrq(), AcpiPm.DefaultS5SleepType, PmTicks, PmFrequency);

        public void RoundTrip(int which)
        {
            switch (which & 3)
            {
                case 0: RoundTrip(Uart, NewUart()); break;
                case 1: RoundTrip(Cmos, NewCmos()); break;
                case 2: RoundTrip(Kbc, NewKbc()); break;
                default: RoundTrip(Pm, NewPm()); break;
            }
        }

        private static void RoundTrip(IStatefulDevice device, IStatefulDevice twin)
        {
            byte[] saved = DeviceStateRecord.Save(device);
            DeviceStateRecord.Load(device, saved);
            byte[] again = DeviceStateRecord.Save(device);
            Invariant.Holds(again.AsSpan().SequenceEqual(saved),
                $"{device.StateKind}: saving after loading its own state gives other bytes ({Convert.ToHexString(saved)} then {Convert.ToHexString(again)})");
            DeviceStateRecord.Load(twin, saved);
            byte[] twinSaved = DeviceStateRecord.Save(twin);
            Invariant.Holds(twinSaved.AsSpan().SequenceEqual(saved),
                $"{device.StateKind}: a fresh device loaded with the state saves other bytes ({Convert.ToHexString(saved)} then {Convert.ToHexString(twinSaved)})");
        }
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var r = new FuzzInput(input);
        var m = new Machine(nanosecondClock: (r.U8() & 1) != 0);
        Span<byte> buf = stackalloc byte[4];
        for (int op = 0; op < MaxOps && r.More; op++)
        {
            switch (r.U8() % 7)
            {
                case 0:
                    {
                        byte what = r.U8();
                        int block = what & 7;
                        ulong off = (ulong)(r.U8() % (m.Lengths[block] + 1));
                        var data = buf[..(((what >> 4) & 3) switch { 1 => 2, 2 => 4, _ => 1 })];
                        if ((what & 8) != 0)
                        {
                            for (int i = 0; i < data.Length; i++) data[i] = r.U8();
                            m.Blocks[block].Write(off, data);
                        }
                        else m.Blocks[block].Read(off, data);
                        break;
                    }
                case 1:
                    {
                        ushort n = r.U16();
                        m.Elapsed += (n & 0x3FFF) * TickUnits[n >> 14];
                        break;
                    }
                case 2:
                    m.Uart.EnqueueInput(r.Take(r.U8() + 1));
                    break;
                case 3:
                    m.Cmos.Poll();
                    break;
                case 4:
                    m.Pm.PressPowerButton();
                    break;
                case 5:
                    m.RoundTrip(r.U8());
                    break;
                default:
                    {
                        var bytes = r.Take(r.U8() + 1);
                        for (int i = 0; i < bytes.Length; i++) m.Uart.Write(0, bytes.Slice(i, 1));
                        break;
                    }
            }
        }
        for (int which = 0; which < 4; which++) m.RoundTrip(which);
    }

    // ---- seeds ----------------------------------------------------------------------------------------------

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        const byte Io = 0, Tick = 1, Input = 2, Poll = 3, Button = 4, State = 5, Tx = 6;
        const byte W = 8, Uart = 0, Cmos = 1, KbcData = 2, KbcCmd = 3, PmEvt = 4, PmCnt = 5, PmTmr = 6, Word = 0x10, Dword = 0x20;

        // The 8250 driver's init: IER 0, LCR DLAB, divisor 1 (115200), LCR 8N1, FCR FIFOs on, MCR DTR|RTS|OUT2, IER RX|TX;
        // "hello" transmitted; host input read back through LSR/RBR; IIR.
        yield return ("uart-init-tx", [0, Io, Uart | W, 1, 0, Io, Uart | W, 3, 0x80, Io, Uart | W, 0, 1, Io, Uart | W, 1, 0,
            Io, Uart | W, 3, 0x03, Io, Uart | W, 2, 0xC7, Io, Uart | W, 4, 0x0B, Io, Uart | W, 1, 0x03,
            Tx, 4, (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o', Io, Uart, 2, Input, 2, (byte)'o', (byte)'k', (byte)'\n',
            Io, Uart, 5, Io, Uart, 0, Io, Uart, 0, Io, Uart, 2, State, 0]);
        // Loopback mode: MCR LOOP, bytes to the receiver, MSR reads.
        yield return ("uart-loopback", [0, Io, Uart | W, 4, 0x10, Tx, 2, 1, 2, 3, Io, Uart, 5, Io, Uart, 0, Io, Uart, 6, Io, Uart | W, 4, 0x00, Io, Uart, 6]);
        // SeaBIOS/Linux reading the time: wait for UIP clear on A, read seconds..year and century in BCD, then binary
        // 12-hour; a second later the update-ended interrupt (B.UIE) flags C; a clock write with SET.
        yield return ("cmos-time", [0, Io, Cmos | W, 0, 0x0A, Io, Cmos, 1, Io, Cmos | W, 0, 0x00, Io, Cmos, 1, Io, Cmos | W, 0, 0x02, Io, Cmos, 1,
            Io, Cmos | W, 0, 0x04, Io, Cmos, 1, Io, Cmos | W, 0, 0x07, Io, Cmos, 1, Io, Cmos | W, 0, 0x08, Io, Cmos, 1,
            Io, Cmos | W, 0, 0x09, Io, Cmos, 1, Io, Cmos | W, 0, 0x32, Io, Cmos, 1,
            Io, Cmos | W, 0, 0x0B, Io, Cmos | W, 1, 0x14, Tick, 0x02, 0x80, Poll, Io, Cmos | W, 0, 0x0C, Io, Cmos, 1,
            Io, Cmos | W, 0, 0x0B, Io, Cmos | W, 1, 0x86, Io, Cmos | W, 0, 0x00, Io, Cmos | W, 1, 0x30, Io, Cmos | W, 0, 0x0B, Io, Cmos | W, 1, 0x06,
            Io, Cmos | W, 0, 0x04, Io, Cmos, 1, State, 1]);
        // i8042: controller self-test (0xAA → 0x55), interface test, read/write the command byte, keyboard reset
        // (0xFF → ACK, 0xAA), mouse through 0xD4 (identify), echo via 0xD2.
        yield return ("i8042-self-test", [0, Io, KbcCmd | W, 0, 0xAA, Io, KbcCmd, 0, Io, KbcData, 0, Io, KbcCmd | W, 0, 0xAB, Io, KbcData, 0,
            Io, KbcCmd | W, 0, 0x20, Io, KbcData, 0, Io, KbcCmd | W, 0, 0x60, Io, KbcData | W, 0, 0x47,
            Io, KbcData | W, 0, 0xFF, Io, KbcData, 0, Io, KbcData, 0, Io, KbcCmd | W, 0, 0xD4, Io, KbcData | W, 0, 0xF2, Io, KbcData, 0, Io, KbcData, 0,
            Io, KbcCmd | W, 0, 0xD2, Io, KbcData | W, 0, 0x1C, Io, KbcCmd, 0, Io, KbcData, 0, State, 2]);
        // ACPI: PM1_EN power button + timer, the timer read across a carry, the power button, PM1_STS cleared, S5.
        yield return ("acpi-pm", [0, Io, PmEvt | W | Word, 2, 0x01, 0x01, Io, PmTmr | Dword, 0, Tick, 0x00, 0x4A, Io, PmEvt | Word, 0,
            Button, Io, PmEvt | Word, 0, Io, PmEvt | W | Word, 0, 0x01, 0x01, State, 3, Io, PmCnt | W | Word, 0, 0x01, 0x34]);
    }

}
