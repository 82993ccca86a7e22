using System.Buffers.Binary;
using Csvmm.Devices.State;

namespace Csvmm.Devices.Pci;

/// <summary>
/// A PCI function's MSI-X capability, vector table and pending-bit array (PCI Local Bus 3.0 §6.8.2). The
/// capability sits in the function's <see cref="PciConfigSpace"/>; the table and the PBA are regions of one of its
/// BARs, reached through <see cref="ReadTable"/>/<see cref="WriteTable"/> and <see cref="ReadPba"/> (or the
/// <see cref="Table"/>/<see cref="Pba"/> bus devices) with offsets relative to each region.
/// </summary>
/// <remarks>
/// <para>Semantics: every entry starts masked. <see cref="Signal"/> on a masked vector (entry or function mask)
/// sets its pending bit instead of interrupting; unmasking a vector whose pending bit is set delivers it and
/// clears the bit. While MSI-X is enabled every table change re-routes that vector
/// (<see cref="IMsiVectors.SetRoute"/>); enabling routes all vectors, disabling drops all routes.</para>
/// <para>Configuration writes reach the function, not this class: the function calls
/// <see cref="ConfigWritten"/> after each one so the table sees Message Control change.</para>
/// <para>Threads: vCPU threads access the table and the configuration space, I/O threads call
/// <see cref="Signal"/>. One short private lock orders them; nothing allocates after construction. The routing
/// callbacks run under the lock, so a vector is never fired on a route that is being replaced.</para>
/// </remarks>
public sealed class MsixTable : IStatefulDevice
{
    /// <summary>The MSI-X capability ID.</summary>
    public const byte CapabilityId = 0x11;

    /// <summary>Bytes of one table entry.</summary>
    public const int EntrySize = 16;

    /// <summary>Largest table the capability can describe.</summary>
    public const int MaxVectors = 2048;

    /// <summary>Message Control bits.</summary>
    public const ushort ControlEnable = 0x8000, ControlFunctionMask = 0x4000;

    /// <summary>Vector Control bit 0: the entry is masked.</summary>
    public const uint VectorControlMask = 1;

    private const int ControlOffset = 2; // Message Control, from the capability's start

    private readonly Lock _lock = new();
    private readonly PciConfigSpace _config;
    private readonly IMsiVectors _vectors;
    private readonly uint[] _entries; // 4 dwords per vector: address low, address high, data, vector control
    private readonly ulong[] _pending;
    private readonly int _count;
    private bool _enabled, _functionMasked;
    private long _delivered, _deferred;

    /// <summary>
    /// Adds the MSI-X capability to <paramref name="config"/> for <paramref name="vectors"/>.Count vectors, with
    /// the table at <paramref name="tableOffset"/> and the PBA at <paramref name="pbaOffset"/> in BAR
    /// <paramref name="bar"/> (offsets 8-byte aligned; the caller places the regions so they do not overlap).
    /// </summary>
    public MsixTable(PciConfigSpace config, IMsiVectors vectors, int bar, uint tableOffset, uint pbaOffset)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(vectors);
        int count = vectors.Count;
        if (count is < 1 or > MaxVectors)
            throw new DeviceException($"MSI-X: {count} vectors is outside [1, {MaxVectors}]");
        if ((uint)bar >= PciConfigSpace.BarCount)
            throw new DeviceException($"MSI-X: BAR {bar} does not exist");
        if ((tableOffset & 7) != 0 || (pbaOffset & 7) != 0)
            throw new DeviceException($"MSI-X: table offset 0x{tableOffset:x} and PBA offset 0x{pbaOffset:x} must be 8-byte aligned");

        _config = config;
        _vectors = vectors;
        _count = count;
        _entries = new uint[4 * count];
        _pending = new ulong[(count + 63) / 64];
        for (int v = 0; v < count; v++) _entries[4 * v + 3] = VectorControlMask;
        Bar = bar;
        TableOffset = tableOffset;
        PbaOffset = pbaOffset;

        Span<byte> body = stackalloc byte[10];
        BinaryPrimitives.WriteUInt16LittleEndian(body, (ushort)(count - 1));
        BinaryPrimitives.WriteUInt32LittleEndian(body[2..], tableOffset | (uint)bar);
        BinaryPrimitives.WriteUInt32LittleEndian(body[6..], pbaOffset | (uint)bar);
        CapabilityOffset = config.AddCapability(CapabilityId, body);
        config.SetWritableBits(CapabilityOffset + ControlOffset, 2, ControlEnable | ControlFunctionMask);

        Table = new Region(this, pba: false);
        Pba = new Region(this, pba: true);
    }

    /// <summary>Number of vectors (table entries).</summary>
    public int Count => _count;

    /// <summary>Offset of the capability in the configuration space.</summary>
    public int CapabilityOffset { get; }

    /// <summary>BAR holding the table and the PBA.</summary>
    public int Bar { get; }

    /// <summary>Offset of the table in the BAR.</summary>
    public uint TableOffset { get; }

    /// <summary>Offset of the PBA in the BAR.</summary>
    public uint PbaOffset { get; }

    /// <summary>Bytes of the table (16 per vector).</summary>
    public int TableSize => EntrySize * _count;

    /// <summary>Bytes of the PBA (a 64-bit word per 64 vectors).</summary>
    public int PbaSize => 8 * _pending.Length;

    /// <summary>The table region as a bus device (offsets from the table's start).</summary>
    public IBusDevice Table { get; }

    /// <summary>The PBA region as a bus device (read-only; offsets from the PBA's start).</summary>
    public IBusDevice Pba { get; }

    /// <summary>MSI-X Enable as the guest last wrote it.</summary>
    public bool Enabled { get { lock (_lock) return _enabled; } }

    /// <summary>Function Mask as the guest last wrote it.</summary>
    public bool FunctionMasked { get { lock (_lock) return _functionMasked; } }

    /// <summary>Interrupts delivered through <see cref="IMsiVectors.Trigger"/> (diagnostics).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Signals that found their vector masked and set its pending bit (diagnostics).</summary>
    public long Deferred => Interlocked.Read(ref _deferred);

    /// <summary>Whether vector <paramref name="vector"/>'s pending bit is set.</summary>
    public bool IsPending(int vector)
    {
        if ((uint)vector >= (uint)_count) return false;
        lock (_lock) return (_pending[vector >> 6] & (1UL << (vector & 63))) != 0;
    }

    /// <summary>
    /// Requests vector <paramref name="vector"/>. False when MSI-X is disabled: the caller uses INTx instead.
    /// Otherwise true: the vector fired, or it is masked and now pending, or it does not exist (dropped).
    /// Called on I/O threads; never allocates.
    /// </summary>
    public bool Signal(int vector)
    {
        lock (_lock)
        {
            if (!_enabled) return false;
            if ((uint)vector >= (uint)_count) return true;
            if (_functionMasked || (_entries[4 * vector + 3] & VectorControlMask) != 0)
            {
                _pending[vector >> 6] |= 1UL << (vector & 63);
                _deferred++;
                return true;
            }
            Fire(vector);
            return true;
        }
    }

    /// <summary>
    /// Tells the table that the guest wrote <paramref name="length"/> configuration bytes at
    /// <paramref name="offset"/>; when that covers Message Control the new Enable and Function Mask take effect.
    /// </summary>
    public void ConfigWritten(int offset, int length)
    {
        int control = CapabilityOffset + ControlOffset;
        if (length <= 0 || offset + length <= control || offset >= control + 2) return;
        ushort value = _config.ReadWord(control);
        lock (_lock)
        {
            bool enable = (value & ControlEnable) != 0;
            bool mask = (value & ControlFunctionMask) != 0;
            if (enable != _enabled)
            {
                _enabled = enable;
                for (int v = 0; v < _count; v++)
                    _vectors.SetRoute(v, enable ? MessageOf(v) : null);
            }
            _functionMasked = mask;
            if (_enabled && !_functionMasked) DeliverPending();
        }
    }

    /// <summary>The table region read at <paramref name="offset"/>: 4- or 8-byte accesses inside the table; others read 0.</summary>
    public void ReadTable(ulong offset, Span<byte> data)
    {
        if (!TableAccess(offset, data.Length, out int dword))
        {
            data.Clear();
            return;
        }
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, _entries[dword]);
            if (data.Length == 8) BinaryPrimitives.WriteUInt32LittleEndian(data[4..], _entries[dword + 1]);
        }
    }

    /// <summary>
    /// The table region written at <paramref name="offset"/>: 4- or 8-byte accesses inside the table; others are
    /// ignored. Re-routes the entry while MSI-X is enabled and delivers a pending vector the write unmasked.
    /// </summary>
    public void WriteTable(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!TableAccess(offset, data.Length, out int dword)) return;
        lock (_lock)
        {
            int vector = dword >> 2;
            bool wasMasked = (_entries[4 * vector + 3] & VectorControlMask) != 0;
            _entries[dword] = BinaryPrimitives.ReadUInt32LittleEndian(data);
            if (data.Length == 8) _entries[dword + 1] = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            // Vector Control: only the mask bit is defined; the rest is reserved (reads as zero).
            _entries[4 * vector + 3] &= VectorControlMask;

            if (!_enabled) return;
            // A write touching the address or data dwords re-routes; a Vector Control write alone does not.
            if ((dword & 3) != 3) _vectors.SetRoute(vector, MessageOf(vector));
            bool masked = (_entries[4 * vector + 3] & VectorControlMask) != 0;
            if (wasMasked && !masked && !_functionMasked) DeliverPending(vector);
        }
    }

    /// <summary>The PBA read at <paramref name="offset"/>: 4- or 8-byte aligned accesses; others read 0.</summary>
    public void ReadPba(ulong offset, Span<byte> data)
    {
        int width = data.Length;
        if (width is not (4 or 8) || offset % (ulong)width != 0 || offset >= (ulong)PbaSize)
        {
            data.Clear();
            return;
        }
        ulong word;
        lock (_lock) word = _pending[(int)(offset >> 3)];
        if (width == 8) BinaryPrimitives.WriteUInt64LittleEndian(data, word);
        else BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)(word >> (int)(8 * (offset & 4))));
    }

    /// <summary>
    /// Back to power-on state (a function-level or platform reset): all entries zero and masked, nothing pending,
    /// MSI-X disabled (routes dropped). The caller resets Message Control in the configuration space.
    /// </summary>
    public void Reset()
    {
        lock (_lock)
        {
            if (_enabled)
                for (int v = 0; v < _count; v++) _vectors.SetRoute(v, null);
            _enabled = false;
            _functionMasked = false;
            Array.Clear(_entries);
            Array.Clear(_pending);
            for (int v = 0; v < _count; v++) _entries[4 * v + 3] = VectorControlMask;
        }
    }

    // ---- saved state ------------------------------------------------------------------------------------

    /// <inheritdoc />
    public string StateKind => "msix";

    /// <inheritdoc />
    public ushort StateVersion => 1;

    /// <summary>
    /// Version 1: the vector count (u16), Enable and Function Mask as the table last took them from Message Control
    /// (bools), each entry's four dwords, the PBA's 64-bit words. The configuration space (with Message Control) is
    /// saved apart, as <c>pci-config</c>; both come from one stopped machine, so they agree.
    /// </summary>
    public void SaveState(StateWriter writer)
    {
        lock (_lock)
        {
            writer.U16((ushort)_count);
            writer.Bool(_enabled);
            writer.Bool(_functionMasked);
            foreach (uint e in _entries) writer.U32(e);
            foreach (ulong p in _pending) writer.U64(p);
        }
    }

    /// <summary>
    /// Loads a saved table of the same size. Reserved Vector Control bits and pending bits past the last vector are
    /// refused. Afterwards the routes are what the loaded entries say (all dropped when MSI-X is disabled), and a
    /// pending vector that is no longer masked is delivered, as the hardware would have.
    /// </summary>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version}");
        int count = r.U16();
        r.Check(count == _count, $"{count} vectors (this table has {_count})");
        bool enabled = r.Bool(), functionMasked = r.Bool();
        var entries = new uint[_entries.Length];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = r.U32();
            if ((i & 3) == 3) r.Check((entries[i] & ~VectorControlMask) == 0, $"vector {i >> 2}'s reserved Vector Control bits");
        }
        var pending = new ulong[_pending.Length];
        for (int i = 0; i < pending.Length; i++) pending[i] = r.U64();
        int tail = _count & 63;
        r.Check(tail == 0 || (pending[^1] >> tail) == 0, "pending bits past the last vector");
        r.End();

        lock (_lock)
        {
            if (_enabled)
                for (int v = 0; v < _count; v++) _vectors.SetRoute(v, null);
            entries.CopyTo(_entries, 0);
            pending.CopyTo(_pending, 0);
            _enabled = enabled;
            _functionMasked = functionMasked;
            if (!_enabled) return;
            for (int v = 0; v < _count; v++) _vectors.SetRoute(v, MessageOf(v));
            if (!_functionMasked) DeliverPending();
        }
    }

    // ---- helpers (callers hold the lock) --------------------------------------------------------------

    private bool TableAccess(ulong offset, int width, out int dword)
    {
        dword = 0;
        if (width is not (4 or 8) || offset % (ulong)width != 0 || offset >= (ulong)TableSize) return false;
        dword = (int)(offset >> 2);
        return true;
    }

    private ulong MessageKey(int vector) => ((ulong)_entries[4 * vector + 1] << 32) | _entries[4 * vector];

    private MsiMessage MessageOf(int vector) => new(MessageKey(vector), _entries[4 * vector + 2]);

    private void Fire(int vector)
    {
        _delivered++;
        _vectors.Trigger(vector);
    }

    private void DeliverPending()
    {
        for (int v = 0; v < _count; v++)
            if ((_entries[4 * v + 3] & VectorControlMask) == 0) DeliverPending(v);
    }

    private void DeliverPending(int vector)
    {
        ulong bit = 1UL << (vector & 63);
        if ((_pending[vector >> 6] & bit) == 0) return;
        _pending[vector >> 6] &= ~bit;
        Fire(vector);
    }

    private sealed class Region(MsixTable table, bool pba) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            if (pba) table.ReadPba(offset, data);
            else table.ReadTable(offset, data);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (!pba) table.WriteTable(offset, data);
        }
    }
}
