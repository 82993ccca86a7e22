using Csvmm.Devices.State;

namespace Csvmm.Ide;

/// <summary>An IDE channel's guest-visible state, for snapshots and migration.</summary>
public sealed partial class IdeChannel : IStatefulDevice
{
    /// <inheritdoc/>
    public string StateKind => "ide-channel";

    /// <inheritdoc/>
    /// <remarks>
    /// Version 1: the task file (each register's current and previous byte), device and control registers, the
    /// pending interrupt, both drives' status and error, the transfer in progress (direction, buffer with its
    /// position, next LBA, sectors left, block sizes, addressing mode), the bus master's command, status and PRD
    /// table address with a pending transfer's direction, and per drive the settings a guest can change (CHS
    /// translation, multiple count, write cache, DMA mode) with the drive's sector count, which must equal the
    /// target's (the same disk). Taken when no disk request is in flight: <see cref="SaveState"/> waits for one.
    /// </remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        // A request on the I/O thread owns the buffers: its completion is part of the state, so wait for it.
        for (int spins = 0; ; spins++)
        {
            lock (_gate)
            {
                if (!_ioInFlight)
                {
                    Save(writer);
                    return;
                }
            }
            Thread.Sleep(spins < 100 ? 0 : 1);
        }
    }

    private void Save(StateWriter w)
    {
        foreach (var r in new[] { _features, _sectorCount, _lbaLow, _lbaMid, _lbaHigh }) { w.U8(r.Current); w.U8(r.Previous); }
        w.U8(_device);
        w.U8(_control);
        w.Bool(_irqPending);
        w.Bytes(_status);
        w.Bytes(_error);
        w.U8((byte)_transfer);
        w.Bytes(_buffer.AsSpan(0, _bufferLen));
        w.U32((uint)_bufferPos);
        w.U64(_nextLba);
        w.U32(_remainingSectors);
        w.U32((uint)_blockSectors);
        w.U32((uint)_blockSize);
        w.Bool(_transferFromDisk);
        w.U8((byte)_addressMode);
        w.U8(_bmCommand);
        w.U8(_bmStatus);
        w.U32(_prdTable);
        w.Bool(_dmaPending);
        w.Bool(_dmaWrite);
        w.Bool(_busMasterEnabled);
        for (int i = 0; i < 2; i++)
        {
            var d = _drives[i];
            w.Bool(d is not null);
            if (d is null) continue;
            w.U64(d.SectorCount);
            w.U8((byte)d.LogicalHeads);
            w.U8((byte)d.LogicalSectorsPerTrack);
            w.U8((byte)d.MultipleSectors);
            w.Bool(d.WriteCacheEnabled);
            w.U8(d.DmaMode);
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        var regs = new TaskRegister[5];
        for (int i = 0; i < 5; i++) { regs[i].Current = r.U8(); regs[i].Previous = r.U8(); }
        byte device = r.U8(), control = r.U8();
        bool irqPending = r.Bool();
        var status = r.Bytes(2).ToArray();
        var error = r.Bytes(2).ToArray();
        byte transfer = r.U8();
        var buffer = r.Bytes(BufferSize).ToArray();
        uint bufferPos = r.U32();
        ulong nextLba = r.U64();
        uint remaining = r.U32(), blockSectors = r.U32(), blockSize = r.U32();
        bool fromDisk = r.Bool();
        byte addressMode = r.U8(), bmCommand = r.U8(), bmStatus = r.U8();
        uint prd = r.U32();
        bool dmaPending = r.Bool(), dmaWrite = r.Bool(), bmEnabled = r.Bool();
        var drives = new (ulong Sectors, byte Heads, byte Spt, byte Multiple, bool Cache, byte Dma)?[2];
        for (int i = 0; i < 2; i++)
        {
            if (!r.Bool()) continue;
            drives[i] = (r.U64(), r.U8(), r.U8(), r.U8(), r.Bool(), r.U8());
        }
        r.End();

        r.Check(status.Length == 2 && error.Length == 2, "status and error are two bytes each");
        r.Check(transfer <= (byte)Transfer.PioOut, $"transfer kind {transfer} does not exist");
        r.Check(bufferPos <= buffer.Length, $"buffer position {bufferPos} is past its {buffer.Length} bytes");
        r.Check(buffer.Length % IdeDrive.SectorSize == 0, "the buffer is not whole sectors");
        r.Check(blockSize >= 1 && blockSize <= IdeDrive.MaxMultipleSectors && blockSectors <= blockSize, "impossible block sizes");
        r.Check(addressMode <= (byte)AddressMode.Lba48, $"addressing mode {addressMode} does not exist");
        r.Check((prd & 3) == 0, "the PRD table address is not dword aligned");
        for (int i = 0; i < 2; i++)
        {
            r.Check(drives[i].HasValue == (_drives[i] is not null), $"drive {i} is {(drives[i].HasValue ? "present" : "absent")} in the state, not here");
            if (drives[i] is not { } d) continue;
            var drive = _drives[i]!;
            r.Check(d.Sectors == drive.SectorCount, $"drive {i} had {d.Sectors} sectors, this disk has {drive.SectorCount} (not the same disk)");
            r.Check(d.Heads is >= 1 and <= 16 && d.Spt >= 1, $"drive {i}: impossible CHS translation");
            r.Check(d.Multiple <= IdeDrive.MaxMultipleSectors && (d.Multiple & (d.Multiple - 1)) == 0, $"drive {i}: multiple count {d.Multiple}");
            r.Check(d.Dma == 0 || (drive.DmaSupported && ((d.Dma >= 0x20 && d.Dma <= 0x22) || (d.Dma >= 0x40 && d.Dma <= 0x45))), $"drive {i}: DMA mode 0x{d.Dma:x2}");
        }
        r.Check(_dmaMemory is not null || (bmCommand == 0 && bmStatus == 0 && prd == 0 && !dmaPending), "bus-master state on a channel without DMA");

        lock (_gate)
        {
            (_features, _sectorCount, _lbaLow, _lbaMid, _lbaHigh) = (regs[0], regs[1], regs[2], regs[3], regs[4]);
            _device = device;
            _control = control;
            _irqPending = irqPending;
            status.CopyTo(_status, 0);
            error.CopyTo(_error, 0);
            _transfer = (Transfer)transfer;
            buffer.CopyTo(_buffer, 0);
            _bufferLen = buffer.Length;
            _bufferPos = (int)bufferPos;
            _nextLba = nextLba;
            _remainingSectors = remaining;
            _blockSectors = (int)blockSectors;
            _blockSize = (int)blockSize;
            _transferFromDisk = fromDisk;
            _addressMode = (AddressMode)addressMode;
            _bmCommand = bmCommand;
            _bmStatus = bmStatus;
            _prdTable = prd;
            _dmaPending = dmaPending;
            _dmaWrite = dmaWrite;
            _busMasterEnabled = bmEnabled;
            for (int i = 0; i < 2; i++)
                if (drives[i] is { } d) _drives[i]!.LoadSettings(d.Heads, d.Spt, d.Multiple, d.Cache, d.Dma);
            _irqLevel = !(_irqPending && (_control & AtaControl.NIen) == 0); // force UpdateIrq to drive the line
            UpdateIrq();
        }
    }
}
