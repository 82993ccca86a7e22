using Csvmm.Devices.State;

namespace Csvmm.Devices.Legacy;

/// <summary>
/// A National Semiconductor 16550A UART as found at COM1 on a PC: 8 byte-wide registers seen at offsets 0-7
/// (RBR/THR/DLL, IER/DLM, IIR/FCR, LCR, MCR, LSR, MSR, SCR).
/// </summary>
/// <remarks>
/// <para>Transmit is instantaneous: every THR byte goes straight to the <see cref="ISerialOutput"/> sink, so
/// LSR.THRE and LSR.TEMT always read 1 and the "THR empty" interrupt is re-armed right after each THR write
/// (as QEMU does once its transmit completes). That interrupt is cleared by reading IIR while it is the reported
/// source or by writing THR, and re-armed by a 0→1 write of IER.ETBEI while THR is empty (the 8250 driver's
/// THRE probe and its start_tx depend on this).</para>
/// <para>Receive: host bytes wait in a 64-byte queue (<see cref="InputCapacity"/>) which is the receiver FIFO the
/// guest drains; <see cref="EnqueueInput"/> refuses what does not fit rather than overrunning. With FIFOs enabled
/// and fewer bytes than the trigger level, IIR reports a character timeout (0x0C) at once instead of after four
/// character times: host input is bursty and the driver treats both the same.</para>
/// <para>Loopback (MCR.LOOP): THR bytes go to the receiver (16-byte FIFO or 1-byte RBR, overrun sets LSR.OE),
/// the modem inputs follow the outputs (CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2) and host input is refused while it
/// lasts. Outside loopback the modem inputs read CTS, DSR and DCD asserted (a null-modem host).</para>
/// <para>Interrupt: the IRQ line is a level, high while any enabled condition is pending and MCR.OUT2 is set (the PC
/// gates the UART's interrupt with OUT2; in loopback OUT2 is forced inactive, so the line stays low).
/// <see cref="IIrqLine.Set"/> is called only when that level changes.</para>
/// <para>Parity/framing/break are never produced; LCR is stored but has no effect. Accesses wider than a byte are
/// treated as consecutive byte accesses. All state is guarded by one private lock shared with the host's input
/// thread; the sink is called under it.</para>
/// </remarks>
public sealed class Serial16550 : IBusDevice, IStatefulDevice
{
    /// <summary>Number of I/O ports the UART occupies.</summary>
    public const int RegisterCount = 8;

    /// <summary>How many received bytes the UART holds before <see cref="EnqueueInput"/> refuses more.</summary>
    public const int InputCapacity = 64;

    /// <summary>Depth of the 16550A's hardware FIFOs (relevant to loopback and trigger levels).</summary>
    public const int FifoDepth = 16;

    // Register offsets.
    private const ulong RegData = 0, RegIer = 1, RegIirFcr = 2, RegLcr = 3, RegMcr = 4, RegLsr = 5, RegMsr = 6, RegScr = 7;

    // IER.
    private const byte IerRxData = 0x01, IerThrEmpty = 0x02, IerLineStatus = 0x04, IerModemStatus = 0x08, IerMask = 0x0F;

    // IIR interrupt identification, highest priority first, and the FIFO-enabled bits.
    private const byte IirNone = 0x01, IirLineStatus = 0x06, IirRxData = 0x04, IirRxTimeout = 0x0C, IirThrEmpty = 0x02,
        IirModemStatus = 0x00, IirFifosEnabled = 0xC0;

    // FCR.
    private const byte FcrEnable = 0x01, FcrClearRx = 0x02;

    // LCR / MCR.
    private const byte LcrDlab = 0x80;
    private const byte McrDtr = 0x01, McrRts = 0x02, McrOut1 = 0x04, McrOut2 = 0x08, McrLoop = 0x10, McrMask = 0x1F;

    // LSR.
    private const byte LsrDataReady = 0x01, LsrOverrun = 0x02, LsrThrEmpty = 0x20, LsrTransmitterEmpty = 0x40;

    // MSR.
    private const byte MsrDeltaCts = 0x01, MsrDeltaDsr = 0x02, MsrTrailingRi = 0x04, MsrDeltaDcd = 0x08,
        MsrCts = 0x10, MsrDsr = 0x20, MsrRi = 0x40, MsrDcd = 0x80;
    private const byte HostModemInputs = MsrCts | MsrDsr | MsrDcd;

    private static ReadOnlySpan<byte> TriggerLevels => [1, 4, 8, 14];

    private readonly Lock _lock = new();
    private readonly IIrqLine _irq;
    private readonly ISerialOutput _output;
    private readonly ByteRing _rx = new(InputCapacity);

    private byte _ier;
    private byte _lcr;
    private byte _mcr;
    private byte _scr;
    private byte _dll = 0x0C; // 9600 baud from the 1.8432 MHz clock, a common power-on value
    private byte _dlm;
    private byte _lineErrors;   // LSR bits 1-4, cleared by reading LSR
    private byte _modemInputs = HostModemInputs; // MSR bits 4-7
    private byte _modemDeltas;  // MSR bits 0-3, cleared by reading MSR
    private byte _lastReceived;
    private bool _fifosEnabled;
    private int _rxTrigger = 1;
    private bool _thrEmptyPending;
    private bool _irqLevel;

    private long _bytesOut;
    private long _bytesIn;
    private long _loopbackBytes;
    private long _overruns;
    private long _bytesDiscarded;

    /// <param name="irq">The UART's interrupt line (IRQ 4 for COM1).</param>
    /// <param name="output">Receives every byte the guest transmits outside loopback.</param>
    public Serial16550(IIrqLine irq, ISerialOutput output)
    {
        ArgumentNullException.ThrowIfNull(irq);
        ArgumentNullException.ThrowIfNull(output);
        _irq = irq;
        _output = output;
    }

    /// <summary>Bytes the guest transmitted to the output sink.</summary>
    public long BytesOut => Volatile.Read(ref _bytesOut);

    /// <summary>Bytes accepted from the host by <see cref="EnqueueInput"/>.</summary>
    public long BytesIn => Volatile.Read(ref _bytesIn);

    /// <summary>Bytes the guest transmitted in loopback mode (they went to its own receiver).</summary>
    public long LoopbackBytes => Volatile.Read(ref _loopbackBytes);

    /// <summary>Loopback bytes lost to a full receiver (LSR.OE was set).</summary>
    public long Overruns => Volatile.Read(ref _overruns);

    /// <summary>Received bytes thrown away because the guest cleared or toggled the receiver FIFO.</summary>
    public long BytesDiscarded => Volatile.Read(ref _bytesDiscarded);

    /// <summary>
    /// Offers host input to the receiver. Thread-safe. Returns how many leading bytes were accepted: 0 when the
    /// 64-byte queue is full or the UART is in loopback; the caller keeps the rest and retries later.
    /// </summary>
    public int EnqueueInput(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if ((_mcr & McrLoop) != 0 || data.IsEmpty) return 0;
            int accepted = _rx.Enqueue(data);
            if (accepted > 0)
            {
                _bytesIn += accepted;
                UpdateIrq();
            }
            return accepted;
        }
    }

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++) data[i] = ReadRegister(offset + (ulong)i);
            UpdateIrq();
        }
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++) WriteRegister(offset + (ulong)i, data[i]);
            UpdateIrq();
        }
    }

    /// <inheritdoc/>
    public string StateKind => "serial16550";

    /// <inheritdoc/>
    /// <remarks>Version 1: IER, LCR, MCR, SCR, DLL, DLM, LSR error bits, MSR inputs and deltas, the last received byte,
    /// FIFO enable, the receive trigger level, the THR-empty interrupt, then the receive queue (at most 64 bytes).</remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            writer.U8(_ier);
            writer.U8(_lcr);
            writer.U8(_mcr);
            writer.U8(_scr);
            writer.U8(_dll);
            writer.U8(_dlm);
            writer.U8(_lineErrors);
            writer.U8(_modemInputs);
            writer.U8(_modemDeltas);
            writer.U8(_lastReceived);
            writer.Bool(_fifosEnabled);
            writer.U8((byte)_rxTrigger);
            writer.Bool(_thrEmptyPending);
            writer.Bytes(_rx.ToArray());
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        byte ier = r.U8(), lcr = r.U8(), mcr = r.U8(), scr = r.U8(), dll = r.U8(), dlm = r.U8();
        byte lineErrors = r.U8(), modemInputs = r.U8(), modemDeltas = r.U8(), lastReceived = r.U8();
        bool fifos = r.Bool();
        byte trigger = r.U8();
        bool thrEmpty = r.Bool();
        ReadOnlySpan<byte> rx = r.Bytes(InputCapacity);
        r.End();
        r.Check((ier & ~IerMask) == 0, $"IER 0x{ier:x2} has bits no 16550 has");
        r.Check((mcr & ~McrMask) == 0, $"MCR 0x{mcr:x2} has bits no 16550 has");
        r.Check((lineErrors & ~0x1E) == 0, $"LSR error bits 0x{lineErrors:x2} are not errors");
        r.Check((modemInputs & 0x0F) == 0 && (modemDeltas & 0xF0) == 0, "MSR inputs and deltas are mixed up");
        r.Check(TriggerLevels.Contains(trigger), $"receive trigger level {trigger} is not 1, 4, 8 or 14");
        // No loopback limit on rx: host input queued before the guest turned loopback on stays queued (Linux's 8250
        // probe does that), so a device in loopback can hold up to InputCapacity bytes (found by fuzzing).
        lock (_lock)
        {
            _ier = ier;
            _lcr = lcr;
            _mcr = mcr;
            _scr = scr;
            _dll = dll;
            _dlm = dlm;
            _lineErrors = lineErrors;
            _modemInputs = modemInputs;
            _modemDeltas = modemDeltas;
            _lastReceived = lastReceived;
            _fifosEnabled = fifos;
            _rxTrigger = trigger;
            _thrEmptyPending = thrEmpty;
            _rx.Reload(rx);
            UpdateIrq();
        }
    }

    private bool Dlab => (_lcr & LcrDlab) != 0;
    private bool Loopback => (_mcr & McrLoop) != 0;

    private byte ReadRegister(ulong offset)
    {
        switch (offset)
        {
            case RegData:
                if (Dlab) return _dll;
                if (_rx.TryDequeue(out byte b)) _lastReceived = b;
                return _lastReceived;
            case RegIer:
                return Dlab ? _dlm : _ier;
            case RegIirFcr:
                byte id = PendingInterrupt();
                if (id == IirThrEmpty) _thrEmptyPending = false; // reading IIR acknowledges THRE
                return (byte)(id | (_fifosEnabled ? IirFifosEnabled : 0));
            case RegLcr:
                return _lcr;
            case RegMcr:
                return _mcr;
            case RegLsr:
                byte lsr = LineStatus();
                _lineErrors = 0;
                return lsr;
            case RegMsr:
                byte msr = (byte)(_modemInputs | _modemDeltas);
                _modemDeltas = 0;
                return msr;
            case RegScr:
                return _scr;
            default:
                return 0xFF;
        }
    }

    private void WriteRegister(ulong offset, byte value)
    {
        switch (offset)
        {
            case RegData:
                if (Dlab) _dll = value;
                else Transmit(value);
                break;
            case RegIer:
                if (Dlab)
                {
                    _dlm = value;
                    break;
                }
                byte old = _ier;
                _ier = (byte)(value & IerMask);
                if ((_ier & IerThrEmpty) == 0) _thrEmptyPending = false;
                else if ((old & IerThrEmpty) == 0) _thrEmptyPending = true; // THR is always empty: re-arm on 0→1
                break;
            case RegIirFcr:
                WriteFifoControl(value);
                break;
            case RegLcr:
                _lcr = value;
                break;
            case RegMcr:
                WriteModemControl((byte)(value & McrMask));
                break;
            case RegScr:
                _scr = value;
                break;
            default:
                break; // LSR and MSR are read-only; past the 8 registers nothing decodes
        }
    }

    private void Transmit(byte value)
    {
        _thrEmptyPending = false;
        if (Loopback)
        {
            _loopbackBytes++;
            int capacity = _fifosEnabled ? FifoDepth : 1;
            if (_rx.Count < capacity) _rx.TryEnqueue(value);
            else
            {
                _lineErrors |= LsrOverrun;
                _overruns++;
                if (!_fifosEnabled) _rx.ReplaceNewest(value); // a 16450 RBR is overwritten; a FIFO drops the new byte
            }
        }
        else
        {
            _output.Write(value);
            _bytesOut++;
        }
        _thrEmptyPending = true; // the (instant) transmitter is done: THR empty again
    }

    private void WriteFifoControl(byte value)
    {
        bool enable = (value & FcrEnable) != 0;
        if (enable != _fifosEnabled)
        {
            DiscardReceived(); // toggling the FIFO mode clears both FIFOs
            _fifosEnabled = enable;
        }
        if (!enable) return; // the other bits are only programmed while FCR0 is 1
        if ((value & FcrClearRx) != 0) DiscardReceived();
        _rxTrigger = TriggerLevels[value >> 6];
        // FCR bit 2 (clear transmit FIFO): the transmit FIFO is always empty. Bit 3 (DMA mode) has no effect.
    }

    private void DiscardReceived()
    {
        _bytesDiscarded += _rx.Count;
        _rx.Clear();
    }

    private void WriteModemControl(byte value)
    {
        _mcr = value;
        byte inputs = Loopback ? LoopedBackInputs(value) : HostModemInputs;
        byte changed = (byte)(inputs ^ _modemInputs);
        if ((changed & MsrCts) != 0) _modemDeltas |= MsrDeltaCts;
        if ((changed & MsrDsr) != 0) _modemDeltas |= MsrDeltaDsr;
        if ((changed & MsrDcd) != 0) _modemDeltas |= MsrDeltaDcd;
        if ((_modemInputs & MsrRi) != 0 && (inputs & MsrRi) == 0) _modemDeltas |= MsrTrailingRi;
        _modemInputs = inputs;
    }

    private static byte LoopedBackInputs(byte mcr)
    {
        byte inputs = 0;
        if ((mcr & McrRts) != 0) inputs |= MsrCts;
        if ((mcr & McrDtr) != 0) inputs |= MsrDsr;
        if ((mcr & McrOut1) != 0) inputs |= MsrRi;
        if ((mcr & McrOut2) != 0) inputs |= MsrDcd;
        return inputs;
    }

    private byte LineStatus()
    {
        byte lsr = (byte)(LsrThrEmpty | LsrTransmitterEmpty | _lineErrors);
        if (!_rx.IsEmpty) lsr |= LsrDataReady;
        return lsr;
    }

    /// <summary>The IIR identification of the highest-priority enabled pending condition.</summary>
    private byte PendingInterrupt()
    {
        if ((_ier & IerLineStatus) != 0 && _lineErrors != 0) return IirLineStatus;
        if ((_ier & IerRxData) != 0 && !_rx.IsEmpty)
            return _fifosEnabled && _rx.Count < _rxTrigger ? IirRxTimeout : IirRxData;
        if ((_ier & IerThrEmpty) != 0 && _thrEmptyPending) return IirThrEmpty;
        if ((_ier & IerModemStatus) != 0 && _modemDeltas != 0) return IirModemStatus;
        return IirNone;
    }

    private void UpdateIrq()
    {
        bool level = (_mcr & (McrOut2 | McrLoop)) == McrOut2 && PendingInterrupt() != IirNone;
        if (level == _irqLevel) return;
        _irqLevel = level;
        _irq.Set(level);
    }
}
