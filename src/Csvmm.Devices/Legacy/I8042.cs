using Csvmm.Devices.State;

namespace Csvmm.Devices.Legacy;

/// <summary>
/// The PC's 8042 keyboard controller with a keyboard and a mouse that have no keys or movement: enough for
/// firmware and Linux's i8042/atkbd/psmouse probes to finish at once, and for the two classic reset paths
/// (command 0xFE, and an output-port write with bit 0 clear) to reach <see cref="IVmControl.RequestReset"/>.
/// </summary>
/// <remarks>
/// <para>One controller, two bus devices sharing its state under one lock: <see cref="DataPort"/> (register it at
/// port 0x60, 1 byte) and <see cref="CommandPort"/> (port 0x64, 1 byte; status on read, command on write). Both
/// see offset 0 only; wider accesses use their first byte and read the rest as 0xFF.</para>
/// <para>The output buffer is fed, whenever it is empty, from the controller's own reply first, then from the
/// keyboard's queue (unless the keyboard interface is disabled), then from the mouse's. IRQ 1 / IRQ 12 are
/// levels: high while the output buffer holds a keyboard / mouse byte and the command byte enables that
/// interrupt. Reading port 0x60 drops the level before the next byte is loaded, so every byte is a new edge.</para>
/// <para>Not modelled: scan-code translation of key data (there is none), the input port (0xC0), password and
/// test-mode commands, timeouts and parity errors. A20 is recorded in the output port but has no effect.</para>
/// </remarks>
public sealed class I8042 : IStatefulDevice
{
    // Status register (port 0x64 read).
    private const byte StatusOutputFull = 0x01, StatusSystem = 0x04, StatusLastWasCommand = 0x08,
        StatusUnlocked = 0x10, StatusAuxOutputFull = 0x20;

    // Command byte (controller RAM 0).
    /// <summary>Command-byte bit: IRQ 1 when the output buffer holds a keyboard byte.</summary>
    public const byte CtrKeyboardInterrupt = 0x01;
    /// <summary>Command-byte bit: IRQ 12 when the output buffer holds a mouse byte.</summary>
    public const byte CtrAuxInterrupt = 0x02;
    /// <summary>Command-byte bit: system flag (POST passed).</summary>
    public const byte CtrSystemFlag = 0x04;
    /// <summary>Command-byte bit: keyboard interface disabled.</summary>
    public const byte CtrKeyboardDisabled = 0x10;
    /// <summary>Command-byte bit: mouse interface disabled.</summary>
    public const byte CtrAuxDisabled = 0x20;
    /// <summary>Command-byte bit: translate keyboard data to scan code set 1.</summary>
    public const byte CtrTranslate = 0x40;

    /// <summary>Command byte at power-on: both interrupts enabled, system flag set, no translation.</summary>
    public const byte DefaultCommandByte = CtrKeyboardInterrupt | CtrAuxInterrupt | CtrSystemFlag;

    // Output port bits.
    private const byte OutResetDeasserted = 0x01, OutA20 = 0x02, OutKeyboardFull = 0x10, OutAuxFull = 0x20;
    private const byte DefaultOutputPort = 0xCF; // reset high, A20 on, unused bits high (as QEMU)

    // Device replies.
    private const byte Ack = 0xFA, Resend = 0xFE, SelfTestPassed = 0xAA, Echo = 0xEE;

    private const string ResetByPulse = "i8042: command 0xFE pulsed the CPU reset line";
    private const string ResetByOutputPort = "i8042: output port written with the reset bit (0) clear";

    private const int DeviceQueueDepth = 16;

    private readonly Lock _lock = new();
    private readonly IVmControl _control;
    private readonly IIrqLine _keyboardIrq;
    private readonly IIrqLine _auxIrq;

    private readonly byte[] _ram = new byte[32]; // controller RAM; byte 0 is the command byte
    private byte _outputPort = DefaultOutputPort;
    private byte _pendingCommand;          // controller command waiting for its data byte on port 0x60
    private bool _lastWriteWasCommand;

    private bool _outputFull;
    private byte _outputData;
    private bool _outputFromAux;
    private bool _replyPending;            // a controller reply waiting for the output buffer
    private byte _replyData;
    private bool _replyFromAux;

    private readonly ByteRing _keyboardQueue = new(DeviceQueueDepth);
    private readonly ByteRing _auxQueue = new(DeviceQueueDepth);
    private byte _keyboardArgumentFor;     // keyboard command waiting for its argument byte
    private byte _keyboardLast = Ack;
    private int _scanCodeSet = 2;
    private byte _leds;
    private byte _auxArgumentFor;
    private byte _auxLast = Ack;
    private bool _auxReporting, _auxRemote, _auxWrap, _auxScaling21;
    private byte _auxResolution = 2, _auxSampleRate = 100;

    private bool _keyboardIrqLevel, _auxIrqLevel;

    private long _unknownCommands;
    private long _droppedBytes;

    /// <param name="control">Receives the reset requests.</param>
    /// <param name="keyboardIrq">IRQ 1.</param>
    /// <param name="auxIrq">IRQ 12.</param>
    public I8042(IVmControl control, IIrqLine keyboardIrq, IIrqLine auxIrq)
    {
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(keyboardIrq);
        ArgumentNullException.ThrowIfNull(auxIrq);
        _control = control;
        _keyboardIrq = keyboardIrq;
        _auxIrq = auxIrq;
        _ram[0] = DefaultCommandByte;
        DataPort = new Port(this, isCommandPort: false);
        CommandPort = new Port(this, isCommandPort: true);
    }

    /// <summary>Port 0x60: output buffer on read; keyboard data or a command's argument on write.</summary>
    public IBusDevice DataPort { get; }

    /// <summary>Port 0x64: status register on read; controller command on write.</summary>
    public IBusDevice CommandPort { get; }

    /// <summary>The controller's command byte.</summary>
    public byte CommandByte
    {
        get { lock (_lock) return _ram[0]; }
    }

    /// <summary>The controller's output port (bit 0 = reset line deasserted, bit 1 = A20).</summary>
    public byte OutputPort
    {
        get { lock (_lock) return _outputPort; }
    }

    /// <summary>The keyboard LEDs last set with command 0xED (bit 0 scroll, 1 num, 2 caps lock).</summary>
    public byte KeyboardLeds
    {
        get { lock (_lock) return _leds; }
    }

    /// <summary>Controller or device commands the model does not know (ignored or answered 0xFE).</summary>
    public long UnknownCommands => Volatile.Read(ref _unknownCommands);

    /// <summary>Device replies dropped because the guest left a device queue full.</summary>
    public long DroppedBytes => Volatile.Read(ref _droppedBytes);

    private byte CommandByteValue => _ram[0];

    private sealed class Port(I8042 owner, bool isCommandPort) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            if (data.IsEmpty) return;
            if (offset != 0)
            {
                data.Fill(0xFF);
                return;
            }
            data[0] = isCommandPort ? owner.ReadStatus() : owner.ReadData();
            data[1..].Fill(0xFF);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (offset != 0 || data.IsEmpty) return;
            if (isCommandPort) owner.WriteCommand(data[0]);
            else owner.WriteData(data[0]);
        }
    }

    private byte ReadStatus()
    {
        lock (_lock)
        {
            byte status = StatusUnlocked;
            if (_outputFull) status |= _outputFromAux ? (byte)(StatusOutputFull | StatusAuxOutputFull) : StatusOutputFull;
            if ((CommandByteValue & CtrSystemFlag) != 0) status |= StatusSystem;
            if (_lastWriteWasCommand) status |= StatusLastWasCommand;
            return status;
        }
    }

    private byte ReadData()
    {
        lock (_lock)
        {
            byte value = _outputData; // an empty buffer reads its last byte again
            if (_outputFull)
            {
                _outputFull = false;
                UpdateIrqs(); // falling edge, so the next byte raises a fresh one
                Settle();
            }
            return value;
        }
    }

    private void WriteCommand(byte command)
    {
        lock (_lock)
        {
            _lastWriteWasCommand = true;
            _pendingCommand = 0;
            switch (command)
            {
                case >= 0x20 and <= 0x3F: Reply(_ram[command & 0x1F]); break; // 0x20: read command byte
                case >= 0x60 and <= 0x7F: _pendingCommand = command; break;  // 0x60: write command byte
                case 0xA7: _ram[0] |= CtrAuxDisabled; break;
                case 0xA8: _ram[0] &= unchecked((byte)~CtrAuxDisabled); break;
                case 0xA9: Reply(0x00); break;                                // mouse interface test: OK
                case 0xAA: _ram[0] |= CtrSystemFlag; Reply(0x55); break;      // controller self-test: passed
                case 0xAB: Reply(0x00); break;                                // keyboard interface test: OK
                case 0xAD: _ram[0] |= CtrKeyboardDisabled; break;
                case 0xAE: _ram[0] &= unchecked((byte)~CtrKeyboardDisabled); break;
                case 0xD0: Reply(OutputPortWithBufferBits()); break;
                case 0xD1 or 0xD2 or 0xD3 or 0xD4: _pendingCommand = command; break;
                case 0xDD: _outputPort &= unchecked((byte)~OutA20); break;
                case 0xDF: _outputPort |= OutA20; break;
                case >= 0xF0:
                    // Pulse output-port lines for 6 µs: bit n clear in the low nibble pulses line n; line 0 is reset.
                    if ((command & 0x01) == 0) _control.RequestReset(ResetByPulse);
                    break;
                default:
                    _unknownCommands++;
                    break;
            }
            Settle();
        }
    }

    private void WriteData(byte value)
    {
        lock (_lock)
        {
            _lastWriteWasCommand = false;
            byte command = _pendingCommand;
            _pendingCommand = 0;
            switch (command)
            {
                case >= 0x60 and <= 0x7F: _ram[command & 0x1F] = value; break;
                case 0xD1: WriteOutputPort(value); break;
                case 0xD2: Reply(value, fromAux: false); break; // as if the keyboard sent it
                case 0xD3: Reply(value, fromAux: true); break;  // as if the mouse sent it (Linux's AUX loop test)
                case 0xD4:
                    _ram[0] &= unchecked((byte)~CtrAuxDisabled); // talking to the mouse re-enables its interface
                    MouseCommand(value);
                    break;
                default:
                    _ram[0] &= unchecked((byte)~CtrKeyboardDisabled); // likewise for the keyboard
                    KeyboardCommand(value);
                    break;
            }
            Settle();
        }
    }

    private void WriteOutputPort(byte value)
    {
        // A clear reset bit pulses the CPU's reset line: the machine resets, and the port reads back with the line
        // released (a state taken between the write and the reset must load; found by fuzzing).
        _outputPort = (byte)(value | OutResetDeasserted);
        if ((value & OutResetDeasserted) == 0) _control.RequestReset(ResetByOutputPort);
    }

    private byte OutputPortWithBufferBits()
    {
        byte value = (byte)(_outputPort & ~(OutKeyboardFull | OutAuxFull));
        if (_outputFull) value |= _outputFromAux ? OutAuxFull : OutKeyboardFull;
        return value;
    }

    private void Reply(byte value, bool fromAux = false)
    {
        _replyPending = true;
        _replyData = value;
        _replyFromAux = fromAux;
    }

    // ---- keyboard ----------------------------------------------------------------------------------

    private void KeyboardCommand(byte value)
    {
        if (_keyboardArgumentFor != 0)
        {
            byte command = _keyboardArgumentFor;
            _keyboardArgumentFor = 0;
            switch (command)
            {
                case 0xED: _leds = (byte)(value & 0x07); KeyboardSend(Ack); break;
                case 0xF3: KeyboardSend(Ack); break; // typematic rate: nothing repeats here
                case 0xF0:
                    if (value == 0)
                    {
                        KeyboardSend(Ack);
                        KeyboardSend(ReportedScanCodeSet());
                    }
                    else if (value <= 3)
                    {
                        _scanCodeSet = value;
                        KeyboardSend(Ack);
                    }
                    else KeyboardSend(Resend);
                    break;
            }
            return;
        }

        switch (value)
        {
            case 0xED or 0xF0 or 0xF3: // set LEDs / scan code set / typematic: an argument follows
                _keyboardArgumentFor = value;
                KeyboardSend(Ack);
                break;
            case 0xEE: KeyboardSend(Echo); break;
            case 0xF2: // identify: an MF2 keyboard
                KeyboardSend(Ack);
                KeyboardSend(0xAB);
                KeyboardSend((CommandByteValue & CtrTranslate) != 0 ? (byte)0x41 : (byte)0x83);
                break;
            case 0xF4 or 0xF5 or 0xF6: KeyboardSend(Ack); break; // enable / disable + defaults / defaults
            case >= 0xF7 and <= 0xFD: KeyboardSend(Ack); break;  // scan code set 3 key types
            case 0xFE: KeyboardSend(_keyboardLast); break;       // resend
            case 0xFF: // reset: acknowledge, then the basic assurance test passes
                _keyboardQueue.Clear();
                _scanCodeSet = 2;
                _leds = 0;
                KeyboardSend(Ack);
                KeyboardSend(SelfTestPassed);
                break;
            default:
                _unknownCommands++;
                KeyboardSend(Resend);
                break;
        }
    }

    private byte ReportedScanCodeSet()
    {
        if ((CommandByteValue & CtrTranslate) == 0) return (byte)_scanCodeSet;
        return _scanCodeSet switch { 1 => 0x43, 2 => 0x41, _ => 0x3F }; // what translation makes of 1, 2, 3
    }

    private void KeyboardSend(byte value)
    {
        _keyboardLast = value;
        if (!_keyboardQueue.TryEnqueue(value)) _droppedBytes++;
    }

    // ---- mouse -------------------------------------------------------------------------------------

    private void MouseCommand(byte value)
    {
        if (_auxArgumentFor != 0)
        {
            byte command = _auxArgumentFor;
            _auxArgumentFor = 0;
            if (command == 0xF3) _auxSampleRate = value;
            else _auxResolution = (byte)(value & 0x03);
            MouseSend(Ack);
            return;
        }
        if (_auxWrap && value != 0xEC && value != 0xFF)
        {
            MouseSend(value); // wrap mode echoes everything except "reset wrap mode" and "reset"
            return;
        }

        switch (value)
        {
            case 0xE6: _auxScaling21 = false; MouseSend(Ack); break;
            case 0xE7: _auxScaling21 = true; MouseSend(Ack); break;
            case 0xE8 or 0xF3: _auxArgumentFor = value; MouseSend(Ack); break; // resolution / sample rate
            case 0xE9: // status request
                MouseSend(Ack);
                MouseSend((byte)((_auxRemote ? 0x40 : 0) | (_auxReporting ? 0x20 : 0) | (_auxScaling21 ? 0x10 : 0)));
                MouseSend(_auxResolution);
                MouseSend(_auxSampleRate);
                break;
            case 0xEA: _auxRemote = false; MouseSend(Ack); break;
            case 0xEB: // read data: a packet with no movement and no buttons
                MouseSend(Ack);
                MouseSend(0x08);
                MouseSend(0x00);
                MouseSend(0x00);
                break;
            case 0xEC: _auxWrap = false; MouseSend(Ack); break;
            case 0xEE: _auxWrap = true; MouseSend(Ack); break;
            case 0xF0: _auxRemote = true; MouseSend(Ack); break;
            case 0xF2: MouseSend(Ack); MouseSend(0x00); break; // identify: a standard PS/2 mouse
            case 0xF4: _auxReporting = true; MouseSend(Ack); break;
            case 0xF5: _auxReporting = false; MouseSend(Ack); break;
            case 0xF6: MouseDefaults(); MouseSend(Ack); break;
            case 0xFE: MouseSend(_auxLast); break;
            case 0xFF:
                _auxQueue.Clear();
                MouseDefaults();
                _auxWrap = false;
                MouseSend(Ack);
                MouseSend(SelfTestPassed);
                MouseSend(0x00); // device id
                break;
            default:
                _unknownCommands++;
                MouseSend(Resend);
                break;
        }
    }

    private void MouseDefaults()
    {
        _auxReporting = false;
        _auxRemote = false;
        _auxScaling21 = false;
        _auxResolution = 2;
        _auxSampleRate = 100;
    }

    private void MouseSend(byte value)
    {
        _auxLast = value;
        if (!_auxQueue.TryEnqueue(value)) _droppedBytes++;
    }

    // ---- output buffer and interrupts -------------------------------------------------------------

    /// <summary>Loads the output buffer if it is empty and something is waiting, then updates both IRQ levels.</summary>
    private void Settle()
    {
        if (!_outputFull)
        {
            if (_replyPending)
            {
                _replyPending = false;
                Load(_replyData, _replyFromAux);
            }
            else if ((CommandByteValue & CtrKeyboardDisabled) == 0 && _keyboardQueue.TryDequeue(out byte k))
                Load(k, fromAux: false);
            else if ((CommandByteValue & CtrAuxDisabled) == 0 && _auxQueue.TryDequeue(out byte a))
                Load(a, fromAux: true);
        }
        UpdateIrqs();
    }

    private void Load(byte value, bool fromAux)
    {
        _outputFull = true;
        _outputData = value;
        _outputFromAux = fromAux;
    }

    /// <inheritdoc/>
    public string StateKind => "i8042";

    /// <inheritdoc/>
    /// <remarks>Version 1: controller RAM (32 bytes, byte 0 the command byte), output port, pending controller command,
    /// last-write-was-command, the output buffer (full, data, from aux), a pending reply, the keyboard's and the aux
    /// device's queues (at most 16 bytes each), their pending commands and last bytes, the scan code set, the LEDs,
    /// and the mouse's reporting, remote, wrap and scaling modes, resolution and sample rate.</remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            writer.Bytes(_ram);
            writer.U8(_outputPort);
            writer.U8(_pendingCommand);
            writer.Bool(_lastWriteWasCommand);
            writer.Bool(_outputFull);
            writer.U8(_outputData);
            writer.Bool(_outputFromAux);
            writer.Bool(_replyPending);
            writer.U8(_replyData);
            writer.Bool(_replyFromAux);
            writer.Bytes(_keyboardQueue.ToArray());
            writer.Bytes(_auxQueue.ToArray());
            writer.U8(_keyboardArgumentFor);
            writer.U8(_keyboardLast);
            writer.U8((byte)_scanCodeSet);
            writer.U8(_leds);
            writer.U8(_auxArgumentFor);
            writer.U8(_auxLast);
            writer.Bool(_auxReporting);
            writer.Bool(_auxRemote);
            writer.Bool(_auxWrap);
            writer.Bool(_auxScaling21);
            writer.U8(_auxResolution);
            writer.U8(_auxSampleRate);
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        ReadOnlySpan<byte> ram = r.Bytes(32);
        byte outputPort = r.U8(), pendingCommand = r.U8();
        bool lastWasCommand = r.Bool(), outputFull = r.Bool();
        byte outputData = r.U8();
        bool outputFromAux = r.Bool(), replyPending = r.Bool();
        byte replyData = r.U8();
        bool replyFromAux = r.Bool();
        ReadOnlySpan<byte> keyboardQueue = r.Bytes(DeviceQueueDepth), auxQueue = r.Bytes(DeviceQueueDepth);
        byte keyboardArgumentFor = r.U8(), keyboardLast = r.U8(), scanCodeSet = r.U8(), leds = r.U8();
        byte auxArgumentFor = r.U8(), auxLast = r.U8();
        bool auxReporting = r.Bool(), auxRemote = r.Bool(), auxWrap = r.Bool(), auxScaling21 = r.Bool();
        byte auxResolution = r.U8(), auxSampleRate = r.U8();
        r.End();
        r.Check(ram.Length == _ram.Length, $"{ram.Length} bytes of controller RAM, not {_ram.Length}");
        r.Check(scanCodeSet is >= 1 and <= 3, $"scan code set {scanCodeSet} does not exist");
        r.Check((leds & ~0x07) == 0, $"LED bits 0x{leds:x2} are not LEDs");
        r.Check(auxResolution <= 3, $"mouse resolution {auxResolution} is not 0-3");
        r.Check((outputPort & OutResetDeasserted) != 0, "the output port holds the CPU in reset");
        lock (_lock)
        {
            ram.CopyTo(_ram);
            _outputPort = outputPort;
            _pendingCommand = pendingCommand;
            _lastWriteWasCommand = lastWasCommand;
            _outputFull = outputFull;
            _outputData = outputData;
            _outputFromAux = outputFromAux;
            _replyPending = replyPending;
            _replyData = replyData;
            _replyFromAux = replyFromAux;
            _keyboardQueue.Reload(keyboardQueue);
            _auxQueue.Reload(auxQueue);
            _keyboardArgumentFor = keyboardArgumentFor;
            _keyboardLast = keyboardLast;
            _scanCodeSet = scanCodeSet;
            _leds = leds;
            _auxArgumentFor = auxArgumentFor;
            _auxLast = auxLast;
            _auxReporting = auxReporting;
            _auxRemote = auxRemote;
            _auxWrap = auxWrap;
            _auxScaling21 = auxScaling21;
            _auxResolution = auxResolution;
            _auxSampleRate = auxSampleRate;
            UpdateIrqs();
        }
    }

    private void UpdateIrqs()
    {
        bool keyboard = _outputFull && !_outputFromAux && (CommandByteValue & CtrKeyboardInterrupt) != 0;
        bool aux = _outputFull && _outputFromAux && (CommandByteValue & CtrAuxInterrupt) != 0;
        if (keyboard != _keyboardIrqLevel)
        {
            _keyboardIrqLevel = keyboard;
            _keyboardIrq.Set(keyboard);
        }
        if (aux != _auxIrqLevel)
        {
            _auxIrqLevel = aux;
            _auxIrq.Set(aux);
        }
    }
}
