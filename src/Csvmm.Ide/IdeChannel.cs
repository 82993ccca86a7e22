using Csvmm.Block;
using Csvmm.Devices;

namespace Csvmm.Ide;

/// <summary>
/// One legacy IDE channel: the shared task file, a master and an optional slave ATA drive, PIO data transfers and
/// INTRQ. The command block (8 ports: data, error/features, sector count, LBA low/mid/high, device, status/command)
/// is <see cref="CommandBlock"/>; the control block (alternate status / device control) is <see cref="ControlBlock"/>.
/// Guest mistakes and disk failures become ATA errors (ERR with ABRT/IDNF/UNC); nothing here throws on a guest access.
/// </summary>
/// <remarks>Each access takes the channel's lock: channels are used by one vCPU at a time in practice, so it is uncontended.</remarks>
public sealed partial class IdeChannel : IDisposable
{
    private const byte ReadyStatus = AtaStatus.Drdy | AtaStatus.Dsc;
    private const int BufferSize = IdeDrive.MaxMultipleSectors * IdeDrive.SectorSize;

    private enum Transfer : byte { None, PioIn, PioOut }

    private readonly Lock _gate = new();
    private readonly IIrqLine _irq;
    private readonly IdeDrive?[] _drives;
    private readonly byte[] _status = new byte[2];
    private readonly byte[] _error = new byte[2];
    private readonly byte[] _buffer = new byte[BufferSize];

    // The task file is shared by both drives (both latch writes); each register keeps its previous value for HOB.
    private TaskRegister _features, _sectorCount, _lbaLow, _lbaMid, _lbaHigh;
    private byte _device;
    private byte _control;
    private bool _irqPending;
    private bool _irqLevel;

    private Transfer _transfer;
    private int _bufferPos;
    private int _bufferLen;
    private ulong _nextLba;
    private uint _remainingSectors;
    private int _blockSectors;
    private int _blockSize = 1;
    private bool _transferFromDisk;
    private AddressMode _addressMode;

    private enum AddressMode : byte { Chs, Lba28, Lba48 }

    /// <summary>Creates a channel with <paramref name="master"/> and optional <paramref name="slave"/>, interrupting through <paramref name="irq"/>.</summary>
    /// <param name="irq">INTRQ of this channel (IRQ 14 / 15 in legacy mode).</param>
    /// <param name="master">Drive 0, or null.</param>
    /// <param name="slave">Drive 1, or null.</param>
    /// <param name="dmaMemory">Guest RAM for bus-master DMA; null leaves DMA out (no <see cref="BusMaster"/>, IDENTIFY says PIO only).</param>
    /// <param name="ioThread">Run disk requests (bus-master transfers, PIO blocks, cache flushes) on a thread of the
    /// channel's own (the machine does): the vCPU whose register write starts one returns at once, the drive is busy
    /// until the request completes (with an interrupt where ATA gives one). Without it (device-level tests) a request
    /// completes inside the register write that starts it.</param>
    public IdeChannel(IIrqLine irq, IdeDrive? master, IdeDrive? slave = null, Csvmm.Memory.GuestMemory? dmaMemory = null, bool ioThread = false)
    {
        ArgumentNullException.ThrowIfNull(irq);
        if (master is not null && ReferenceEquals(master, slave))
            throw new ArgumentException("the same IdeDrive cannot be both master and slave", nameof(slave));
        _irq = irq;
        _drives = [master, slave];
        CommandBlock = new CommandPorts(this);
        ControlBlock = new ControlPorts(this);
        _dmaMemory = dmaMemory;
        _dmaVectors = dmaMemory is null ? null : new IoVector[MaxPrdEntries];
        BusMaster = dmaMemory is null ? null : new BusMasterPorts(this);
        _worker = ioThread ? new DiskWorker(this, "ide-io") : null;
        master?.AttachDma(dmaMemory is not null);
        slave?.AttachDma(dmaMemory is not null);
        lock (_gate) ResetLocked(hardware: true);
    }

    /// <summary>Stops the DMA thread (after a transfer in progress finishes: its disk request cannot be taken back).</summary>
    public void Dispose() => _worker?.Dispose();

    /// <summary>The 8-port command block (offsets 0..7; 0x1F0 / 0x170 on the legacy channels).</summary>
    public IBusDevice CommandBlock { get; }

    /// <summary>The 1-port control block: alternate status (read) / device control (write) at offset 0 (0x3F6 / 0x376).</summary>
    public IBusDevice ControlBlock { get; }

    /// <summary>The drive at position 0 (master) or 1 (slave), or null.</summary>
    public IdeDrive? GetDrive(int index) => _drives[index & 1];

    /// <summary>
    /// Hardware reset (platform reset): drives back to power-on settings, signatures loaded, INTRQ low, bus-master
    /// command, status and PRD table address cleared.
    /// </summary>
    public void Reset()
    {
        lock (_gate) ResetLocked(hardware: true);
    }

    private int Selected => (_device >> 4) & 1;
    private IdeDrive? SelectedDrive => _drives[Selected];
    private bool AnyDrive => _drives[0] is not null || _drives[1] is not null;

    // ---- register access ---------------------------------------------------------------------------------

    private void ReadCommand(ulong offset, Span<byte> data)
    {
        if (data.Length == 0) return;
        lock (_gate)
        {
            if (offset == 0)
            {
                ReadData(data);
                return;
            }
            data.Clear();
            data[0] = ReadRegister(offset);
        }
    }

    private byte ReadRegister(ulong offset)
    {
        if (!AnyDrive) return 0xFF; // floating bus
        bool hob = (_control & AtaControl.Hob) != 0;
        switch (offset)
        {
            case 1: return _error[Selected];
            case 2: return _sectorCount.Get(hob);
            case 3: return _lbaLow.Get(hob);
            case 4: return _lbaMid.Get(hob);
            case 5: return _lbaHigh.Get(hob);
            case 6: return _device;
            case 7:
                byte status = SelectedDrive is null ? (byte)0 : StatusOf(Selected);
                _irqPending = false;
                UpdateIrq();
                return status;
            default: return 0xFF;
        }
    }

    private void WriteCommand(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length == 0) return;
        lock (_gate)
        {
            if (offset == 0)
            {
                WriteData(data);
                return;
            }
            byte value = data[0];
            // Task-file writes are ignored while a drive is busy (SRST asserted, or a bus-master transfer on the I/O
            // thread); any write clears HOB.
            if ((_control & AtaControl.Srst) != 0 || _ioInFlight) return;
            // As on real drives (and in QEMU), the task file other than the command register ignores writes while the
            // selected drive is busy or has data to move: a device-register write mid-transfer would otherwise send the
            // rest of it to the other drive, or to one that is absent (found by fuzzing: it crashed the I/O thread).
            if (offset != 7 && (StatusOf(Selected) & (AtaStatus.Bsy | AtaStatus.Drq)) != 0) return;
            _control = (byte)(_control & ~AtaControl.Hob);
            switch (offset)
            {
                case 1: _features.Set(value); break;
                case 2: _sectorCount.Set(value); break;
                case 3: _lbaLow.Set(value); break;
                case 4: _lbaMid.Set(value); break;
                case 5: _lbaHigh.Set(value); break;
                case 6: _device = value; break;
                case 7: ExecuteCommand(value); break;
            }
        }
    }

    private void ReadControl(ulong offset, Span<byte> data)
    {
        if (data.Length == 0) return;
        data.Clear();
        lock (_gate)
        {
            if (offset != 0 || !AnyDrive) { data[0] = 0xFF; return; }
            // Alternate status: the same bits, without acknowledging the interrupt.
            data[0] = SelectedDrive is null ? (byte)0 : StatusOf(Selected);
        }
    }

    private void WriteControl(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length == 0 || offset != 0) return;
        lock (_gate)
        {
            byte value = data[0];
            bool wasReset = (_control & AtaControl.Srst) != 0;
            bool reset = (value & AtaControl.Srst) != 0;
            _control = value;
            if (reset && !wasReset)
            {
                AbortTransfer();
                _irqPending = false;
                for (int i = 0; i < 2; i++) if (_drives[i] is not null) _status[i] = AtaStatus.Bsy;
            }
            else if (!reset && wasReset)
            {
                ResetLocked(hardware: false);
            }
            UpdateIrq();
        }
    }

    // ---- PIO data port ----------------------------------------------------------------------------------

    private void ReadData(Span<byte> data)
    {
        if (_transfer != Transfer.PioIn)
        {
            data.Clear();
            return;
        }
        int n = Math.Min(data.Length, _bufferLen - _bufferPos);
        _buffer.AsSpan(_bufferPos, n).CopyTo(data);
        data[n..].Clear();
        _bufferPos += n;
        if (_bufferPos < _bufferLen) return;

        if (!_transferFromDisk)
        {
            FinishTransfer(interrupt: false);
            return;
        }
        _nextLba += (ulong)_blockSectors;
        _remainingSectors -= (uint)_blockSectors;
        if (_remainingSectors == 0)
        {
            ReportAddress(_nextLba - 1);
            FinishTransfer(interrupt: false);
        }
        else
            LoadReadBlock();
    }

    private void WriteData(ReadOnlySpan<byte> data)
    {
        if (_transfer != Transfer.PioOut) return;
        int n = Math.Min(data.Length, _bufferLen - _bufferPos);
        data[..n].CopyTo(_buffer.AsSpan(_bufferPos, n));
        _bufferPos += n;
        if (_bufferPos < _bufferLen) return;

        _transfer = Transfer.None;
        Post(new DiskJob(JobKind.PioWrite, SelectedDrive!, Selected, _nextLba, _bufferLen, true, false, 0, 0, 0));
    }

    private void FinishPioWrite(in DiskJob job, DiskIoResult result)
    {
        if (!result.IsOk)
        {
            ReportAddress(_nextLba);
            CommandError(result.Status == DiskIoStatus.OutOfRange ? AtaError.Idnf : AtaError.Abrt);
            return;
        }
        _nextLba += (ulong)_blockSectors;
        _remainingSectors -= (uint)_blockSectors;
        if (_remainingSectors == 0)
        {
            ReportAddress(_nextLba - 1);
            FinishTransfer(interrupt: true);
            return;
        }
        BeginBlock(Transfer.PioOut);
        RaiseIrq();
    }

    // ---- commands ---------------------------------------------------------------------------------------

    private void ExecuteCommand(byte command)
    {
        _irqPending = false;
        UpdateIrq();
        if (command == AtaCommand.ExecuteDeviceDiagnostic)
        {
            // Runs on both drives whichever is selected; completes with the signature and an interrupt.
            AbortTransfer();
            LoadSignatures();
            _device = 0;
            RaiseIrq();
            return;
        }
        IdeDrive? drive = SelectedDrive;
        if (drive is null) return; // device 0 does not respond for an absent device 1
        AbortTransfer();
        int self = Selected;
        _error[self] = 0;

        switch (command)
        {
            case AtaCommand.IdentifyDevice:
                drive.WriteIdentify(_buffer);
                _transferFromDisk = false;
                _bufferPos = 0;
                _bufferLen = IdeDrive.SectorSize;
                _transfer = Transfer.PioIn;
                _status[self] = ReadyStatus | AtaStatus.Drq;
                RaiseIrq();
                break;

            case AtaCommand.ReadSectors or AtaCommand.ReadSectorsNoRetry:
                StartDiskTransfer(drive, lba48: false, write: false, multiple: false); break;
            case AtaCommand.ReadSectorsExt:
                StartDiskTransfer(drive, lba48: true, write: false, multiple: false); break;
            case AtaCommand.ReadMultiple:
                StartDiskTransfer(drive, lba48: false, write: false, multiple: true); break;
            case AtaCommand.ReadMultipleExt:
                StartDiskTransfer(drive, lba48: true, write: false, multiple: true); break;
            case AtaCommand.WriteSectors or AtaCommand.WriteSectorsNoRetry:
                StartDiskTransfer(drive, lba48: false, write: true, multiple: false); break;
            case AtaCommand.WriteSectorsExt:
                StartDiskTransfer(drive, lba48: true, write: true, multiple: false); break;
            case AtaCommand.WriteMultiple:
                StartDiskTransfer(drive, lba48: false, write: true, multiple: true); break;
            case AtaCommand.WriteMultipleExt:
                StartDiskTransfer(drive, lba48: true, write: true, multiple: true); break;

            case AtaCommand.ReadVerifySectors or AtaCommand.ReadVerifySectorsNoRetry or AtaCommand.ReadVerifySectorsExt:
                if (TryDecodeRange(drive, command == AtaCommand.ReadVerifySectorsExt, out _, out _)) CommandDone();
                break;

            case AtaCommand.SetMultipleMode:
                if (drive.TrySetMultiple(_sectorCount.Current)) CommandDone(); else CommandError(AtaError.Abrt);
                break;

            case AtaCommand.FlushCache or AtaCommand.FlushCacheExt:
                Post(new DiskJob(JobKind.Flush, drive, self, 0, 0, false, false, 0, 0, 0));
                break;

            case AtaCommand.SetFeatures:
                SetFeatures(drive);
                break;

            case AtaCommand.ReadNativeMaxAddress:
                {
                    ulong max = Math.Min(drive.SectorCount, IdeDrive.Lba28Limit + 1UL) - 1;
                    _lbaLow.Set((byte)max);
                    _lbaMid.Set((byte)(max >> 8));
                    _lbaHigh.Set((byte)(max >> 16));
                    _device = (byte)((_device & 0xF0) | (int)((max >> 24) & 0x0F));
                    CommandDone();
                    break;
                }
            case AtaCommand.ReadNativeMaxAddressExt:
                {
                    ulong max = drive.SectorCount - 1;
                    _lbaLow.Set((byte)(max >> 24));
                    _lbaLow.Set((byte)max);
                    _lbaMid.Set((byte)(max >> 32));
                    _lbaMid.Set((byte)(max >> 8));
                    _lbaHigh.Set((byte)(max >> 40));
                    _lbaHigh.Set((byte)(max >> 16));
                    CommandDone();
                    break;
                }

            case AtaCommand.CheckPowerMode:
                _sectorCount.Set(0xFF); // active or idle
                CommandDone();
                break;

            case AtaCommand.StandbyImmediate or AtaCommand.IdleImmediate or AtaCommand.Standby or AtaCommand.Idle:
                CommandDone();
                break;

            case AtaCommand.InitializeDeviceParameters:
                if (drive.TrySetGeometry((_device & 0x0F) + 1, _sectorCount.Current)) CommandDone(); else CommandError(AtaError.Abrt);
                break;

            case >= AtaCommand.Recalibrate and <= 0x1F:
                _lbaLow.Set(1); // CHS sector 1, cylinder 0
                _lbaMid.Set(0);
                _lbaHigh.Set(0);
                CommandDone();
                break;

            case AtaCommand.ReadDma or AtaCommand.ReadDmaNoRetry:
                StartDma(drive, lba48: false, write: false); break;
            case AtaCommand.ReadDmaExt:
                StartDma(drive, lba48: true, write: false); break;
            case AtaCommand.WriteDma or AtaCommand.WriteDmaNoRetry:
                StartDma(drive, lba48: false, write: true); break;
            case AtaCommand.WriteDmaExt:
                StartDma(drive, lba48: true, write: true); break;

            default:
                CommandError(AtaError.Abrt);
                break;
        }
    }

    private void SetFeatures(IdeDrive drive)
    {
        switch (_features.Current)
        {
            case 0x02: drive.WriteCacheEnabled = true; CommandDone(); break;
            case 0x82: drive.WriteCacheEnabled = false; CommandDone(); break;
            case 0x03:
                // Transfer mode: PIO default/flow-control modes 0-4 are accepted; DMA modes arrive with the bus-master.
                byte mode = _sectorCount.Current;
                if (mode <= 0x01 || (mode >= 0x08 && mode <= 0x0C)) CommandDone();
                else if (drive.TrySetDmaMode(mode)) CommandDone();
                else CommandError(AtaError.Abrt);
                break;
            default: CommandError(AtaError.Abrt); break;
        }
    }

    /// <summary>Decodes the address and count of a read/write/verify; on failure the command is already completed with an error.</summary>
    private bool TryDecodeRange(IdeDrive drive, bool lba48, out ulong lba, out uint count)
    {
        if (lba48)
        {
            lba = _lbaLow.Current | ((ulong)_lbaMid.Current << 8) | ((ulong)_lbaHigh.Current << 16)
                | ((ulong)_lbaLow.Previous << 24) | ((ulong)_lbaMid.Previous << 32) | ((ulong)_lbaHigh.Previous << 40);
            count = (uint)(_sectorCount.Current | (_sectorCount.Previous << 8));
            if (count == 0) count = 65536;
        }
        else
        {
            count = _sectorCount.Current == 0 ? 256u : _sectorCount.Current;
            if ((_device & 0x40) != 0)
            {
                lba = _lbaLow.Current | ((ulong)_lbaMid.Current << 8) | ((ulong)_lbaHigh.Current << 16) | ((ulong)(_device & 0x0F) << 24);
            }
            else if (!drive.TryChsToLba(_lbaMid.Current | (_lbaHigh.Current << 8), _device & 0x0F, _lbaLow.Current, out lba))
            {
                CommandError(AtaError.Idnf);
                return false;
            }
        }
        // lba < 2^48 and count ≤ 2^16: the sum cannot overflow.
        if (lba + count > drive.SectorCount)
        {
            CommandError(AtaError.Idnf);
            return false;
        }
        return true;
    }

    private void StartDiskTransfer(IdeDrive drive, bool lba48, bool write, bool multiple)
    {
        int block = 1;
        if (multiple)
        {
            if (drive.MultipleSectors == 0) { CommandError(AtaError.Abrt); return; }
            block = drive.MultipleSectors;
        }
        if (!TryDecodeRange(drive, lba48, out ulong lba, out uint count)) return;
        if (write && drive.Disk.ReadOnly) { CommandError(AtaError.Abrt); return; }

        _addressMode = lba48 ? AddressMode.Lba48 : (_device & 0x40) != 0 ? AddressMode.Lba28 : AddressMode.Chs;
        _nextLba = lba;
        _remainingSectors = count;
        _blockSize = block;
        _transferFromDisk = true;
        if (write)
        {
            BeginBlock(Transfer.PioOut); // PIO out: no interrupt before the first block
        }
        else
        {
            LoadReadBlock();
        }
    }

    /// <summary>Sets up the next block of a disk transfer: <see cref="_blockSectors"/>, buffer bounds and DRQ.</summary>
    private void BeginBlock(Transfer direction)
    {
        _blockSectors = (int)Math.Min((uint)_blockSize, _remainingSectors);
        _bufferPos = 0;
        _bufferLen = _blockSectors * IdeDrive.SectorSize;
        _transfer = direction;
        _status[Selected] = ReadyStatus | AtaStatus.Drq;
    }

    private void LoadReadBlock()
    {
        BeginBlock(Transfer.PioIn);
        _transfer = Transfer.None; // no data until the block has been read
        Post(new DiskJob(JobKind.PioRead, SelectedDrive!, Selected, _nextLba, _bufferLen, false, false, 0, 0, 0));
    }

    private void FinishPioRead(in DiskJob job, DiskIoResult result)
    {
        if (!result.IsOk)
        {
            ReportAddress(_nextLba);
            CommandError(result.Status == DiskIoStatus.OutOfRange ? AtaError.Idnf : AtaError.Unc);
            return;
        }
        _transfer = Transfer.PioIn;
        _status[Selected] = ReadyStatus | AtaStatus.Drq;
        RaiseIrq();
    }

    /// <summary>
    /// Loads <paramref name="lba"/> into the address registers in the command's addressing mode: the last sector
    /// transferred on success, the failing sector on error (ATA-8 "normal/error outputs").
    /// </summary>
    private void ReportAddress(ulong lba)
    {
        switch (_addressMode)
        {
            case AddressMode.Lba48:
                _lbaLow.Set((byte)(lba >> 24));
                _lbaLow.Set((byte)lba);
                _lbaMid.Set((byte)(lba >> 32));
                _lbaMid.Set((byte)(lba >> 8));
                _lbaHigh.Set((byte)(lba >> 40));
                _lbaHigh.Set((byte)(lba >> 16));
                break;
            case AddressMode.Lba28:
                _lbaLow.Set((byte)lba);
                _lbaMid.Set((byte)(lba >> 8));
                _lbaHigh.Set((byte)(lba >> 16));
                _device = (byte)((_device & 0xF0) | (int)((lba >> 24) & 0x0F));
                break;
            default:
                IdeDrive drive = SelectedDrive!;
                ulong perCylinder = (ulong)drive.LogicalHeads * (ulong)drive.LogicalSectorsPerTrack;
                ulong cylinder = lba / perCylinder;
                ulong rest = lba % perCylinder;
                _lbaLow.Set((byte)(rest % (ulong)drive.LogicalSectorsPerTrack + 1));
                _lbaMid.Set((byte)cylinder);
                _lbaHigh.Set((byte)(cylinder >> 8));
                _device = (byte)((_device & 0xF0) | (int)(rest / (ulong)drive.LogicalSectorsPerTrack));
                break;
        }
    }

    private void FinishTransfer(bool interrupt)
    {
        _transfer = Transfer.None;
        _status[Selected] = ReadyStatus;
        if (interrupt) RaiseIrq();
    }

    private void CommandDone()
    {
        _status[Selected] = ReadyStatus;
        RaiseIrq();
    }

    private void CommandError(byte error)
    {
        _transfer = Transfer.None;
        _error[Selected] = error;
        _status[Selected] = ReadyStatus | AtaStatus.Err;
        RaiseIrq();
    }

    private void AbortTransfer()
    {
        _transfer = Transfer.None;
        _dmaPending = false;
        _jobGeneration++; // a request still on the I/O thread completes into nothing
        _bufferPos = _bufferLen = 0;
    }

    // ---- reset and interrupts ---------------------------------------------------------------------------

    private void ResetLocked(bool hardware)
    {
        AbortTransfer();
        if (hardware)
        {
            _control = 0;
            foreach (IdeDrive? d in _drives) d?.ResetSettings();
        }
        LoadSignatures();
        _device = 0;
        _features = default;
        if (hardware)
        {
            _bmCommand = _bmStatus = 0;
            _prdTable = 0;
        }
        _irqPending = false;
        UpdateIrq();
    }

    /// <summary>ATA signature after reset/diagnostics: count = LBA low = 1, LBA mid/high = 0, error = 01h (passed).</summary>
    private void LoadSignatures()
    {
        _sectorCount = new TaskRegister(1);
        _lbaLow = new TaskRegister(1);
        _lbaMid = default;
        _lbaHigh = default;
        for (int i = 0; i < 2; i++)
        {
            _error[i] = 0x01;
            _status[i] = _drives[i] is null ? (byte)0 : ReadyStatus;
        }
    }

    private void RaiseIrq()
    {
        _irqPending = true;
        UpdateIrq();
    }

    private void UpdateIrq()
    {
        bool level = _irqPending && (_control & AtaControl.NIen) == 0;
        if (level == _irqLevel) return;
        _irqLevel = level;
        _irq.Set(level);
    }

    /// <summary>A two-deep task-file register: the current value and the one written before it (read with HOB).</summary>
    private struct TaskRegister(byte initial)
    {
        public byte Current = initial;
        public byte Previous;

        public void Set(byte value)
        {
            Previous = Current;
            Current = value;
        }

        public readonly byte Get(bool hob) => hob ? Previous : Current;
    }

    private sealed class CommandPorts(IdeChannel channel) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => channel.ReadCommand(offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => channel.WriteCommand(offset, data);
    }

    private sealed class ControlPorts(IdeChannel channel) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => channel.ReadControl(offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => channel.WriteControl(offset, data);
    }
}
