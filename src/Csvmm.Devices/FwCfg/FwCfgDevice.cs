using System.Buffers.Binary;
using Csvmm.Devices.State;

namespace Csvmm.Devices.FwCfg;

/// <summary>
/// Guest memory as the fw_cfg DMA interface reaches it: whole transfers that either happen or fail (an address
/// outside guest RAM), never a partial write.
/// </summary>
public interface IDmaMemory
{
    /// <summary>Copies guest memory at <paramref name="address"/> into <paramref name="destination"/>; false when the range is not RAM.</summary>
    bool Read(ulong address, Span<byte> destination);

    /// <summary>Copies <paramref name="source"/> to guest memory at <paramref name="address"/>; false (nothing written) when the range is not RAM.</summary>
    bool Write(ulong address, ReadOnlySpan<byte> source);

    /// <summary>Zeroes <paramref name="length"/> bytes at <paramref name="address"/>; false (nothing written) when the range is not RAM.</summary>
    bool Zero(ulong address, ulong length);
}

/// <summary>
/// QEMU's firmware configuration device on x86 (docs/specs/fw_cfg.rst), the interface SeaBIOS reads its platform
/// from: register it at port 0x510 with <see cref="PortLength"/> bytes. Offset 0, 16-bit write: the selector (a key;
/// the read offset restarts at 0). Offset 1, 8-bit read: the next byte of the selected item (0 past its end or for a
/// key with no item). Offsets 4-11: the DMA address register, big-endian; a 32-bit write of the high half at 4 is
/// kept, a 32-bit write of the low half at 8 (or a 64-bit write at 4) starts the transfer the
/// <c>FWCfgDmaAccess</c> structure at that guest address describes; reads give the signature "QEMU CFG".
/// </summary>
/// <remarks>
/// A DMA transfer runs to completion inside the port write that starts it (as in QEMU), item bytes copied straight
/// into guest RAM; past the item's end reads are zero-filled; writes are refused (no item is writable here) with the
/// error bit. Every guest-supplied address and length is checked against guest RAM before a byte moves; a bad one
/// ends the transfer with the error bit, never a VMM fault. A control-path device: one lock, no allocation per access.
/// </remarks>
public sealed class FwCfgDevice : IBusDevice, IStatefulDevice
{
    /// <summary>Bytes from the selector port (0x510) to the end of the DMA address register (0x51B).</summary>
    public const int PortLength = 12;
    /// <summary>What reads of the DMA address register give (big-endian "QEMU CFG").</summary>
    public const ulong DmaSignature = 0x51454D5520434647;

    /// <summary>DMA control bits.</summary>
    public const uint DmaError = 0x01, DmaRead = 0x02, DmaSkip = 0x04, DmaSelect = 0x08, DmaWrite = 0x10;
    /// <summary>Size of FWCfgDmaAccess: control (BE32), length (BE32), address (BE64).</summary>
    public const int DmaAccessLength = 16;

    private const int DmaOffset = 4;
    private const int ZeroChunk = 4096;

    private readonly FwCfgContent _content;
    private readonly IDmaMemory? _memory;
    private readonly Lock _lock = new();
    private ushort _selector;
    private byte[]? _current;
    private uint _offset;
    private uint _dmaHigh;
    private long _dmaTransfers, _dmaErrors;

    /// <param name="content">The items served.</param>
    /// <param name="memory">Guest RAM for the DMA interface; null when the content says it has none.</param>
    public FwCfgDevice(FwCfgContent content, IDmaMemory? memory)
    {
        ArgumentNullException.ThrowIfNull(content);
        bool dma = (BinaryPrimitives.ReadUInt32LittleEndian(content.Item(FwCfgContent.IdKey)) & FwCfgContent.IdDma) != 0;
        if (dma && memory is null) throw new ArgumentException("fw_cfg content with DMA needs guest memory");
        _content = content;
        _memory = dma ? memory : null;
        Select(FwCfgContent.SignatureKey);
    }

    /// <summary>DMA transfers started, and how many of them ended with the error bit.</summary>
    public (long Transfers, long Errors) DmaCounts => (Interlocked.Read(ref _dmaTransfers), Interlocked.Read(ref _dmaErrors));

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        data.Clear();
        if (offset == 1 && data.Length == 1)
        {
            lock (_lock) data[0] = NextByte();
        }
        else if (offset >= DmaOffset && offset < PortLength && _memory is not null)
        {
            for (int i = 0; i < data.Length && offset + (ulong)i < PortLength; i++)
                data[i] = (byte)(DmaSignature >> (8 * (7 - ((int)offset - DmaOffset + i))));
        }
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == 0 && data.Length == 2)
        {
            lock (_lock) Select(BinaryPrimitives.ReadUInt16LittleEndian(data));
            return;
        }
        if (_memory is null) return;
        if (offset == DmaOffset && data.Length == 4)
            lock (_lock) _dmaHigh = BinaryPrimitives.ReadUInt32BigEndian(data);
        else if (offset == DmaOffset + 4 && data.Length == 4)
            lock (_lock) Dma(((ulong)_dmaHigh << 32) | BinaryPrimitives.ReadUInt32BigEndian(data));
        else if (offset == DmaOffset && data.Length == 8)
            lock (_lock) Dma(BinaryPrimitives.ReadUInt64BigEndian(data));
        // Anything else (data port writes, odd widths) is ignored, as QEMU ignores it.
    }

    private void Select(ushort key)
    {
        _selector = key;
        _offset = 0;
        _current = (key & FwCfgContent.WriteBit) != 0 ? null : _content.Item(key);
    }

    private byte NextByte()
    {
        if (_current is null || _offset >= (uint)_current.Length) return 0;
        return _current[_offset++];
    }

    private void Dma(ulong accessAddress)
    {
        _dmaHigh = 0;
        Interlocked.Increment(ref _dmaTransfers);
        var memory = _memory!;
        Span<byte> access = stackalloc byte[DmaAccessLength];
        if (!memory.Read(accessAddress, access))
        {
            // Nowhere to report the error: QEMU does not either. Count it.
            Interlocked.Increment(ref _dmaErrors);
            return;
        }
        uint control = BinaryPrimitives.ReadUInt32BigEndian(access);
        ulong length = BinaryPrimitives.ReadUInt32BigEndian(access[4..]);
        ulong address = BinaryPrimitives.ReadUInt64BigEndian(access[8..]);

        if ((control & DmaSelect) != 0) Select((ushort)(control >> 16));
        bool read = (control & DmaRead) != 0;
        bool write = !read && (control & DmaWrite) != 0;
        bool skip = !read && !write && (control & DmaSkip) != 0;
        if (!read && !write && !skip) length = 0;

        bool error = false;
        if (write)
            error = length > 0; // no item accepts writes
        else if (length > 0)
        {
            ulong available = _current is null || _offset >= (uint)_current.Length ? 0 : (ulong)_current.Length - _offset;
            ulong fromItem = Math.Min(available, length);
            if (read)
            {
                if (fromItem > 0 && !memory.Write(address, _current.AsSpan((int)_offset, (int)fromItem)))
                    error = true;
                else if (length > fromItem && (address + fromItem < address || !memory.Zero(address + fromItem, length - fromItem)))
                    error = true;
            }
            if (!error) _offset += (uint)fromItem;
        }

        Span<byte> status = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(status, error ? DmaError : 0);
        if (error) Interlocked.Increment(ref _dmaErrors);
        memory.Write(accessAddress, status); // the control field is the structure's first member
    }

    /// <inheritdoc/>
    public string StateKind => "fw-cfg";

    /// <inheritdoc/>
    /// <remarks>Version 1: the selector, the read offset, the DMA address register's high half. The items themselves
    /// are the machine's configuration, rebuilt from its spec, not state.</remarks>
    public ushort StateVersion => 1;

    /// <inheritdoc/>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            writer.U16(_selector);
            writer.U32(_offset);
            writer.U32(_dmaHigh);
        }
    }

    /// <inheritdoc/>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version} is not one this csvmm reads");
        ushort selector = r.U16();
        uint offset = r.U32(), dmaHigh = r.U32();
        r.End();
        var item = (selector & FwCfgContent.WriteBit) != 0 ? null : _content.Item(selector);
        r.Check(offset <= (uint)(item?.Length ?? 0), $"read offset {offset} is past the end of item 0x{selector:x4}");
        r.Check(_memory is not null || dmaHigh == 0, "a DMA address on a device without DMA");
        lock (_lock)
        {
            Select(selector);
            _offset = offset;
            _dmaHigh = dmaHigh;
        }
    }
}
