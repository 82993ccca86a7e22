using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>
/// A descriptor chain popped from a <see cref="SplitQueue"/>. The chain was walked and validated once when
/// popped (<see cref="Error"/>, lengths, count); enumerating it walks the guest's descriptors again and
/// re-validates every field, because the guest may rewrite them at any time. Enumeration never allocates.
/// </summary>
public readonly struct DescriptorChain
{
    private readonly GuestMemory? _memory;
    private readonly GuestAddress _table;
    private readonly ushort _queueSize;

    internal DescriptorChain(GuestMemory memory, GuestAddress table, ushort queueSize, ushort head)
    {
        _memory = memory;
        _table = table;
        _queueSize = queueSize;
        Head = head;

        var walker = new ChainWalker(memory, table, queueSize, head);
        uint count = 0;
        ulong readable = 0, writable = 0;
        while (walker.TryNext(out var segment))
        {
            count++;
            if (segment.Writable) writable += segment.Length;
            else readable += segment.Length;
        }
        Error = walker.Error;
        DescriptorCount = count;
        ReadableLength = (uint)readable; // walker caps the total at uint.MaxValue
        WritableLength = (uint)writable;
    }

    /// <summary>Head descriptor index, the id to hand back to <see cref="SplitQueue.AddUsed"/>.</summary>
    public ushort Head { get; }

    /// <summary>The first problem found while walking the chain; <see cref="VirtqueueError.None"/> when valid.</summary>
    public VirtqueueError Error { get; }

    /// <summary>True when the chain walked cleanly.</summary>
    public bool IsValid => Error == VirtqueueError.None;

    /// <summary>Number of buffers (descriptors referring to indirect tables are not counted).</summary>
    public uint DescriptorCount { get; }

    /// <summary>Total bytes of the device-readable buffers.</summary>
    public uint ReadableLength { get; }

    /// <summary>Total bytes of the device-writable buffers.</summary>
    public uint WritableLength { get; }

    /// <summary>Walks the chain again; check <see cref="Enumerator.Error"/> after the loop.</summary>
    public Enumerator GetEnumerator() =>
        _memory is null ? default : new Enumerator(new ChainWalker(_memory, _table, _queueSize, Head));

    // A default(DescriptorChain) has Error None and no segments; only TryPopAvail creates real chains.

    /// <summary>Allocation-free enumerator over the chain's segments; stops at the end or at the first error.</summary>
    public struct Enumerator
    {
        private ChainWalker _walker;
        private DescriptorSegment _current;

        internal Enumerator(ChainWalker walker)
        {
            _walker = walker;
            _current = default;
        }

        /// <summary>The current segment.</summary>
        public readonly DescriptorSegment Current => _current;

        /// <summary>Why enumeration stopped early, or <see cref="VirtqueueError.None"/>.</summary>
        public readonly VirtqueueError Error => _walker.Error;

        /// <summary>Advances to the next segment; false at the end of the chain or on an error.</summary>
        public bool MoveNext() => _walker.TryNext(out _current);
    }
}

/// <summary>
/// The one place that reads guest descriptors. Every step is bounded: at most the queue size descriptors in
/// the main table and at most the table length inside an indirect table, so a loop ends in
/// <see cref="VirtqueueError.ChainTooLong"/>.
/// </summary>
internal struct ChainWalker
{
    private readonly GuestMemory? _memory;
    private GuestAddress _table;
    private uint _tableEntries;     // entries of the table being walked
    private uint _budget;           // descriptors still allowed in the table being walked
    private uint _index;
    private bool _inIndirect;
    private bool _seenWritable;
    private bool _done;
    private ulong _total;

    public ChainWalker(GuestMemory memory, GuestAddress table, ushort queueSize, ushort head)
    {
        _memory = memory;
        _table = table;
        _tableEntries = queueSize;
        _budget = queueSize;
        _index = head;
        _inIndirect = false;
        _seenWritable = false;
        _done = false;
        _total = 0;
        Error = VirtqueueError.None;
    }

    public VirtqueueError Error { get; private set; }

    public bool TryNext(out DescriptorSegment segment)
    {
        segment = default;
        if (_memory is null) return false; // default(DescriptorChain): nothing to walk
        while (!_done)
        {
            if (_index >= _tableEntries) return Fail(VirtqueueError.DescriptorIndexOutOfRange);
            if (_budget == 0) return Fail(VirtqueueError.ChainTooLong);
            _budget--;

            // The table range was validated when the queue or indirect table was set up; _index < _tableEntries.
            if (!_memory.TryGetSpan(_table + _index * (ulong)Virtq.DescriptorSize, Virtq.DescriptorSize, out var raw))
                return Fail(VirtqueueError.IndirectTableOutOfRange);
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(raw);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(raw[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(raw[14..]);

            if ((flags & Virtq.DescFlagIndirect) != 0)
            {
                if (_inIndirect) return Fail(VirtqueueError.NestedIndirect);
                if ((flags & Virtq.DescFlagNext) != 0) return Fail(VirtqueueError.IndirectWithNext);
                if (len == 0 || len % Virtq.DescriptorSize != 0 || len / Virtq.DescriptorSize > Virtq.MaxIndirectEntries)
                    return Fail(VirtqueueError.BadIndirectLength);
                var tableStart = new GuestAddress(addr);
                if (!tableStart.TryAdd(len, out _) || !_memory.IsValidRange(tableStart, len))
                    return Fail(VirtqueueError.IndirectTableOutOfRange);
                _table = tableStart;
                _tableEntries = len / Virtq.DescriptorSize;
                _budget = _tableEntries;
                _index = 0;
                _inIndirect = true;
                continue;
            }

            if (len == 0) return Fail(VirtqueueError.ZeroLengthBuffer);
            var start = new GuestAddress(addr);
            if (!start.TryAdd(len, out _)) return Fail(VirtqueueError.AddressOverflow);
            var region = _memory.FindRegion(start, len);
            if (region is null) return Fail(VirtqueueError.BufferOutOfRange);

            bool writable = (flags & Virtq.DescFlagWrite) != 0;
            if (writable)
            {
                if (region.ReadOnly) return Fail(VirtqueueError.WritableBufferReadOnly);
                _seenWritable = true;
            }
            else if (_seenWritable)
            {
                return Fail(VirtqueueError.ReadableAfterWritable);
            }

            _total += len;
            if (_total > uint.MaxValue) return Fail(VirtqueueError.TotalLengthOverflow);

            if ((flags & Virtq.DescFlagNext) != 0) _index = next;
            else _done = true;

            segment = new DescriptorSegment(start, len, writable);
            return true;
        }
        return false;
    }

    private bool Fail(VirtqueueError error)
    {
        Error = error;
        _done = true;
        return false;
    }
}
