using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Devices;
using Csvmm.Memory;

namespace Csvmm.Ide;

/// <summary>Bus-master DMA (SFF-8038i) for one channel: command, status and PRD table address registers.</summary>
public sealed partial class IdeChannel
{
    /// <summary>A PRD table may not cross a 64 KiB boundary, so it holds at most 8192 entries.</summary>
    private const int MaxPrdEntries = 65536 / 8;

    private readonly GuestMemory? _dmaMemory;
    private byte _bmCommand;
    private byte _bmStatus;
    private uint _prdTable;
    private bool _dmaPending;
    private bool _dmaWrite;
    private bool _busMasterEnabled = true;

    /// <summary>
    /// This channel's 8 bus-master registers (offset 0 command, 2 status, 4-7 PRD table address) inside the
    /// PIIX BMIDE BAR (primary at +0, secondary at +8); null when the channel was built without DMA memory.
    /// </summary>
    public IBusDevice? BusMaster { get; }

    /// <summary>
    /// Whether the PCI function may master the bus (its command register's Bus Master Enable bit). While false a
    /// started transfer stalls: START sets Active but nothing moves until the bit is set again, when the pending
    /// transfer runs. A channel used on its own (no PCI function) is always enabled; <see cref="PiixIde"/> drives it.
    /// </summary>
    internal bool BusMasterEnabled
    {
        get { lock (_gate) return _busMasterEnabled; }
        set
        {
            lock (_gate)
            {
                bool rising = value && !_busMasterEnabled;
                _busMasterEnabled = value;
                if (rising && _dmaPending && (_bmCommand & BusMasterBits.Start) != 0) RunDma();
            }
        }
    }

    private void StartDma(IdeDrive drive, bool lba48, bool write)
    {
        if (_dmaMemory is null) { CommandError(AtaError.Abrt); return; }
        if (!TryDecodeRange(drive, lba48, out ulong lba, out uint count)) return;
        if (write && drive.Disk.ReadOnly) { CommandError(AtaError.Abrt); return; }
        _addressMode = lba48 ? AddressMode.Lba48 : (_device & 0x40) != 0 ? AddressMode.Lba28 : AddressMode.Chs;
        _nextLba = lba;
        _remainingSectors = count;
        _dmaWrite = write;
        _dmaPending = true;
        _status[Selected] = ReadyStatus | AtaStatus.Drq;
        if ((_bmCommand & BusMasterBits.Start) != 0 && _busMasterEnabled) RunDma();
    }

    /// <summary>
    /// Moves the whole pending transfer between the disk and the guest buffers the PRD table names. Every entry is
    /// bounds-checked against guest RAM (a writable region for a disk read) before the disk is touched through it.
    /// </summary>
    private void RunDma()
    {
        _dmaPending = false;
        IdeDrive drive = SelectedDrive!;
        GuestMemory memory = _dmaMemory!;
        ulong diskOffset = _nextLba * IdeDrive.SectorSize; // lba < 2^48: no overflow
        ulong remaining = (ulong)_remainingSectors * IdeDrive.SectorSize;
        uint entryAddress = _prdTable;
        byte error = 0;
        bool tableError = false;

        for (int i = 0; i < MaxPrdEntries && remaining > 0; i++)
        {
            if (!memory.TryGetSpan(new GuestAddress(entryAddress), 8, out Span<byte> entry)) { tableError = true; break; }
            uint bufferAddress = BinaryPrimitives.ReadUInt32LittleEndian(entry) & ~1u;
            uint length = BinaryPrimitives.ReadUInt16LittleEndian(entry[4..]) & ~1u;
            if (length == 0) length = 65536;
            bool last = (BinaryPrimitives.ReadUInt16LittleEndian(entry[6..]) & 0x8000) != 0;

            int chunk = (int)Math.Min(length, remaining);
            var address = new GuestAddress(bufferAddress);
            GuestRegion? region = memory.FindRegion(address, (ulong)chunk);
            if (region is null || (!_dmaWrite && region.ReadOnly) || !memory.TryGetSpan(address, chunk, out Span<byte> buffer))
            {
                tableError = true;
                break;
            }
            DiskIoResult result = _dmaWrite ? drive.Disk.Write(diskOffset, buffer) : drive.Disk.Read(diskOffset, buffer);
            if (!result.IsOk)
            {
                error = result.Status == DiskIoStatus.OutOfRange ? AtaError.Idnf : _dmaWrite ? AtaError.Abrt : AtaError.Unc;
                break;
            }
            diskOffset += (ulong)chunk;
            remaining -= (ulong)chunk;
            entryAddress += 8;
            if (last) break;
        }

        _bmStatus = (byte)((_bmStatus & ~BusMasterBits.Active) | BusMasterBits.Interrupt);
        if (tableError || (error == 0 && remaining > 0))
        {
            // A bad or too short PRD table: the bus master reports an error, the command is aborted.
            _bmStatus |= BusMasterBits.Error;
            error = AtaError.Abrt;
        }
        if (error != 0)
        {
            ReportAddress(diskOffset / IdeDrive.SectorSize);
            CommandError(error);
            return;
        }
        ReportAddress(diskOffset / IdeDrive.SectorSize - 1);
        CommandDone();
    }

    private void ReadBusMaster(ulong offset, Span<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong reg = offset + (ulong)i;
                data[i] = reg switch
                {
                    0 => _bmCommand,
                    2 => _bmStatus,
                    >= 4 and <= 7 => (byte)(_prdTable >> (int)(8 * (reg - 4))),
                    _ => 0,
                };
            }
        }
    }

    private void WriteBusMaster(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong reg = offset + (ulong)i;
                byte value = data[i];
                switch (reg)
                {
                    case 0:
                        bool starting = (value & BusMasterBits.Start) != 0 && (_bmCommand & BusMasterBits.Start) == 0;
                        _bmCommand = (byte)(value & (BusMasterBits.Start | BusMasterBits.ToMemory));
                        if ((value & BusMasterBits.Start) == 0) _bmStatus &= unchecked((byte)~BusMasterBits.Active);
                        if (starting)
                        {
                            _bmStatus |= BusMasterBits.Active;
                            if (_dmaPending && _busMasterEnabled) RunDma();
                        }
                        break;
                    case 2:
                        // Error and interrupt are write-1-to-clear; the DMA-capable bits are plain storage.
                        const byte w1c = BusMasterBits.Error | BusMasterBits.Interrupt;
                        int stillSet = _bmStatus & w1c & ~value;
                        _bmStatus = (byte)((_bmStatus & BusMasterBits.Active) | stillSet | (value & BusMasterBits.DmaCapableMask));
                        break;
                    case >= 4 and <= 7:
                        int shift = (int)(8 * (reg - 4));
                        uint mask = 0xFFu << shift;
                        _prdTable = ((_prdTable & ~mask) | ((uint)value << shift)) & ~3u; // dword aligned
                        break;
                }
            }
        }
    }

    private sealed class BusMasterPorts(IdeChannel channel) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => channel.ReadBusMaster(offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => channel.WriteBusMaster(offset, data);
    }
}
