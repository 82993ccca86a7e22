using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Memory;
using Csvmm.Security;
using Csvmm.Sys;
using Csvmm.Virtio;
using Microsoft.Win32.SafeHandles;
using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// virtio-blk as a hostile guest driver drives it: descriptor tables, rings, request headers, indirect tables and
/// discard ranges all come from the input, and the device serves its queue synchronously (no I/O thread,
/// <see cref="VirtioBlk.ProcessQueue"/> called by the input) over a real <see cref="RawDisk"/> on a small scratch image.
/// </summary>
/// <remarks>
/// <para>Machine: 1 MiB of RAM at 0 and a 64 KiB ROM right after it at 0x10_0000 (adjacent, so a buffer straddling the
/// two must be refused), a 256 KiB image (one per process, unlinked as soon as it is open; its contents carry over from
/// run to run), one split queue. Reads past the input's end give zeroes.</para>
/// <para>Input encoding. Byte 0: bits 0-3 log2 of the queue size (mod 9: 1..256); bit 4 VIRTIO_F_EVENT_IDX; bit 5 a
/// read-only disk; bit 6 a custom ring layout follows (three u16 values, desc / avail / used, each times 32: anywhere in
/// RAM, the ROM or unmapped space; otherwise desc 0x1000, avail 0x2000, used 0x3000); bit 7 an options byte follows
/// (bits 0-1 max_discard_seg 1/2/32/256, bits 2-3 max_discard_sectors 1/8/0x3FFFFF/2^32-1, bit 4 no serial).
/// Then operations until the input ends (at most 512), each an opcode byte (mod 13) and its operands, little-endian:</para>
/// <list type="bullet">
/// <item>0 WRITE off:u24 n:u8, then n+1 bytes: raw bytes into RAM at off (mod 1 MiB, clipped at its end).</item>
/// <item>1 FILL off:u24 n:u16 value:u8: n+1 bytes of value into RAM.</item>
/// <item>2 DESC index:u16 DESCRIPTOR: a descriptor at index (mod size) of the queue's table (skipped where the table is not RAM).</item>
/// <item>3 DESC-AT off:u24 DESCRIPTOR: a descriptor at off (16-aligned, in RAM): indirect tables.</item>
/// <item>4 HEADER off:u24 type:u8 sector:u32: a request header; type = the byte's low 7 bits (0xFF: 0xFFFFFFFF);
/// bit 7 makes the sector 2^64-1 minus the value.</item>
/// <item>5 RANGE off:u24 sector:u32 sectors:u32 flags:u8: a discard/write-zeroes range (flags bits 0-1, bit 7 adds an unknown flag).</item>
/// <item>6 PUBLISH head:u16: head (bit 15 clear: mod size; set: the low 15 bits raw) into the next avail slot, then avail.idx+1.</item>
/// <item>7 AVAIL-IDX idx:u16: avail.idx set to any value.</item>
/// <item>8 PROCESS how:u8 (mod 4): 0/1 ProcessQueue(0), 2 Poll(), 3 ProcessQueue(1) and ProcessCompletions().</item>
/// <item>9 RESET how:u8: Reset() and a fresh queue attached; bit 0 also zeroes avail.flags/idx and used.flags/idx.</item>
/// <item>10 CONFIG off:u8 width:u8: a configuration read (offset mod 64, width 1/2/4/8) and a write of the same bytes.</item>
/// <item>11 REQUEST type:u8 sector:u16 shape:u8 unit:u8, then for DISCARD/WRITE_ZEROES (sector:u16 sectors:u16 flags:u8)
/// per range (at most 4 per data buffer): a whole request laid out in fresh RAM and published. shape bits 0-1 data buffers
/// (0-3), bit 2 indirect, bit 3 buffer length = unit bytes (else unit × 512; ranges: unit × 16), bit 4 status byte at the
/// end of the last data buffer, bit 5 process at once, bit 6 header in two descriptors, bit 7 data direction flipped.</item>
/// <item>12 SUPPRESS which:u8 value:u16: bit 0 set: used_event, clear: avail.flags.</item>
/// </list>
/// <para>DESCRIPTOR = addr:u32 len:u16 flags:u8 next:u16. addr: top two bits 11 → 2^64-1 minus the low 16 bits (wrap),
/// 10 → 0x10_0000 + the low 17 bits (the ROM and past it), else the low 21 bits (RAM, ROM, unmapped). flags: bits 0-2 the
/// virtq flags, bit 3 unknown flag bits too, bit 7 length | 0xFFFF0000.</para>
/// <para>Invariants: no exception escapes; every ProcessQueue returns exactly the chains it popped (nothing is deferred
/// without AIO); when avail.idx was not moved meanwhile, it pops no more than was made available (none from a broken
/// queue); the ROM is unchanged; the image keeps its size; afterwards a Reset, a fresh attach and one well-formed
/// 1-sector read complete with VIRTIO_BLK_S_OK.</para>
/// </remarks>
public sealed class VirtioBlkTarget : IFuzzTarget
{
    public string Name => "virtio-blk";
    public string Description => "virtio-blk request queue (descriptors, rings, requests) driven by a hostile guest, served synchronously";

    private const ulong RamSize = 1 << 20;
    private const ulong RomBase = 0x10_0000;
    private const int RomSize = 0x1_0000;
    private const int ImageSize = 256 << 10;
    private const ulong DefaultDesc = 0x1000, DefaultAvail = 0x2000, DefaultUsed = 0x3000;
    private const ulong HeapStart = 0x8000, HeapEnd = 0xF_0000;
    private const int MaxOps = 512;

    private static Rig? s_rig;

    /// <summary>What one process shares across runs: guest memory, the ROM's contents, the disk.</summary>
    private sealed class Rig
    {
        public readonly GuestMemory Memory = new();
        public readonly byte[] Rom = new byte[RomSize];
        public readonly RawDisk Disk;
        public readonly IDiskBackend ReadOnlyDisk;
        public readonly SafeFileHandle Image;
        public readonly long ImageLength = ImageSize;
        public readonly EventFdHandle Notify = EventFdHandle.Create();
        public readonly CountingInterrupt Interrupt = new();

        public Rig()
        {
            Memory.AddRegion(GuestAddress.Zero, RamSize, "ram");
            Memory.AddRegion(new GuestAddress(RomBase), RomSize, "rom", readOnly: true);
            for (int i = 0; i < RomSize; i++) Rom[i] = (byte)(i * 151 + (i >> 8) + 0x5A);
            Rom.CopyTo(Memory.GetSpan(new GuestAddress(RomBase), RomSize));
            (Disk, Image) = ScratchImage.Open("virtio-blk", ImageSize);
            ReadOnlyDisk = new ReadOnlyDiskView(Disk);
        }
    }

    private sealed class CountingInterrupt : IVirtioInterrupt
    {
        public long Queue, Config, NeedsReset;
        public void SignalQueue(int queue) => Queue++;
        public void SignalConfig() => Config++;
        public void SetNeedsReset() => NeedsReset++;
    }

    /// <summary>The driver's side of the queue: where the rings are and what it has published.</summary>
    private struct Driver
    {
        public ushort Size;
        public bool EventIdx;
        public ulong Desc, Avail, Used;
        public ushort AvailIdx, NextDesc;
        public ulong Heap;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var rig = s_rig ??= new Rig();
        var memory = rig.Memory;
        memory.GetSpan(GuestAddress.Zero, (int)RamSize).Clear();
        var r = new FuzzInput(input);

        byte config = r.U8();
        var d = new Driver
        {
            Size = (ushort)(1 << ((config & 0x0F) % 9)),
            EventIdx = (config & 0x10) != 0,
            Desc = DefaultDesc, Avail = DefaultAvail, Used = DefaultUsed,
            Heap = HeapStart,
        };
        bool readOnly = (config & 0x20) != 0;
        if ((config & 0x40) != 0)
        {
            d.Desc = (ulong)r.U16() << 5;
            d.Avail = (ulong)r.U16() << 5;
            d.Used = (ulong)r.U16() << 5;
        }
        var options = new VirtioBlkOptions { Serial = "csvmm-fuzz-serial-0123456789", AsyncIo = false };
        if ((config & 0x80) != 0)
        {
            byte o = r.U8();
            options = options with
            {
                MaxDiscardSegments = (o & 3) switch { 0 => 1u, 1 => 2u, 2 => 32u, _ => 256u },
                MaxDiscardSectors = ((o >> 2) & 3) switch { 0 => 1u, 1 => 8u, 2 => 0x3F_FFFFu, _ => uint.MaxValue },
                Serial = (o & 0x10) != 0 ? null : options.Serial,
            };
        }

        using var blk = new VirtioBlk(readOnly ? rig.ReadOnlyDisk : rig.Disk, options);
        ulong features = blk.DeviceFeatures & ~(d.EventIdx ? 0 : VirtioFeatures.EventIdx);
        SplitQueue? queue = Attach(blk, rig, ref d, features);

        for (int op = 0; op < MaxOps && r.More; op++)
        {
            switch (r.U8() % 13)
            {
                case 0:
                    {
                        ulong off = r.U24() % RamSize;
                        int n = r.U8() + 1;
                        var bytes = r.Take((int)Math.Min((ulong)n, RamSize - off));
                        bytes.CopyTo(memory.GetSpan(new GuestAddress(off), bytes.Length));
                        break;
                    }
                case 1:
                    {
                        ulong off = r.U24() % RamSize;
                        int n = (int)Math.Min((ulong)r.U16() + 1, RamSize - off);
                        memory.GetSpan(new GuestAddress(off), n).Fill(r.U8());
                        break;
                    }
                case 2:
                    {
                        int index = r.U16() % d.Size;
                        WriteDescriptor(memory, d.Desc + 16 * (ulong)index, ref r);
                        break;
                    }
                case 3:
                    WriteDescriptor(memory, (r.U24() % RamSize) & ~15UL, ref r);
                    break;
                case 4:
                    {
                        ulong off = r.U24() % (RamSize - HeaderSize);
                        byte type = r.U8();
                        uint sector = r.U32();
                        WriteHeader(memory, off, type, sector);
                        break;
                    }
                case 5:
                    {
                        ulong off = r.U24() % (RamSize - RangeSize);
                        uint sector = r.U32(), sectors = r.U32();
                        byte flags = r.U8();
                        var range = memory.GetSpan(new GuestAddress(off), RangeSize);
                        BinaryPrimitives.WriteUInt64LittleEndian(range, sector);
                        BinaryPrimitives.WriteUInt32LittleEndian(range[8..], sectors);
                        BinaryPrimitives.WriteUInt32LittleEndian(range[12..], (flags & 3u) | ((flags & 0x80) != 0 ? 0x100u : 0));
                        break;
                    }
                case 6:
                    {
                        ushort v = r.U16();
                        Publish(memory, ref d, (v & 0x8000) != 0 ? (ushort)(v & 0x7FFF) : (ushort)(v % d.Size));
                        break;
                    }
                case 7:
                    d.AvailIdx = r.U16();
                    WriteU16(memory, d.Avail + 2, d.AvailIdx);
                    break;
                case 8:
                    Process(blk, queue, memory, d, r.U8() % 4);
                    break;
                case 9:
                    {
                        byte how = r.U8();
                        blk.Reset();
                        if ((how & 1) != 0)
                        {
                            WriteU16(memory, d.Avail, 0);
                            WriteU16(memory, d.Avail + 2, 0);
                            WriteU16(memory, d.Used, 0);
                            WriteU16(memory, d.Used + 2, 0);
                            d.AvailIdx = 0;
                        }
                        queue = Attach(blk, rig, ref d, features);
                        break;
                    }
                case 10:
                    {
                        int off = r.U8() % 64;
                        Span<byte> data = stackalloc byte[1 << (r.U8() % 4)];
                        blk.ReadConfig(off, data);
                        blk.WriteConfig(off, data);
                        break;
                    }
                case 11:
                    if (Request(memory, ref d, ref r)) Process(blk, queue, memory, d, 0);
                    break;
                default:
                    {
                        byte which = r.U8();
                        ushort value = r.U16();
                        WriteU16(memory, (which & 1) != 0 ? d.Avail + 4 + 2 * (ulong)d.Size : d.Avail, value);
                        break;
                    }
            }
        }

        Invariant.Holds(memory.GetSpan(new GuestAddress(RomBase), RomSize).SequenceEqual(rig.Rom), "the read-only region changed");
        Invariant.Holds(RandomAccess.GetLength(rig.Image) == rig.ImageLength, "the image changed size");
        CheckWellFormedRead(blk, rig);
    }

    /// <summary>Creates the driver's queue as the transport would (TryCreate validates it) and attaches the device; null when the layout is refused.</summary>
    private static SplitQueue? Attach(VirtioBlk blk, Rig rig, ref Driver d, ulong features)
    {
        d.AvailIdx = ReadU16(rig.Memory, d.Avail + 2);
        var error = SplitQueue.TryCreate(rig.Memory, new SplitQueueConfig(d.Size, new GuestAddress(d.Desc), new GuestAddress(d.Avail),
            new GuestAddress(d.Used), d.EventIdx), out var queue);
        IReadOnlyList<VirtioQueue> queues = error == VirtqueueError.None ? [new VirtioQueue(0, queue!, rig.Notify)] : [];
        blk.Attach(new VirtioActivation(rig.Memory, features, queues, rig.Interrupt));
        return queue;
    }

    private static void Process(VirtioBlk blk, SplitQueue? queue, GuestMemory memory, in Driver d, int how)
    {
        ushort nextAvail = queue?.NextAvail ?? 0, nextUsed = queue?.NextUsed ?? 0;
        bool broken = queue?.IsBroken ?? false;
        bool idxReadable = memory.TryGetSpan(new GuestAddress(d.Avail + 2), 2, out var idxSpan);
        ushort availBefore = idxReadable ? BinaryPrimitives.ReadUInt16LittleEndian(idxSpan) : (ushort)0;

        switch (how)
        {
            case 0 or 1: blk.ProcessQueue(0); break;
            case 2: blk.Poll(); break;
            default:
                blk.ProcessQueue(1);
                blk.ProcessCompletions();
                break;
        }
        if (queue is null) return;

        int popped = (ushort)(queue.NextAvail - nextAvail);
        int used = (ushort)(queue.NextUsed - nextUsed);
        Invariant.Holds(used == popped, $"popped {popped} chains but returned {used} (nothing may be left in flight without AIO)");
        Invariant.Holds(!broken || popped == 0, "popped a chain from a broken queue");
        if (idxReadable && BinaryPrimitives.ReadUInt16LittleEndian(idxSpan) == availBefore)
        {
            int available = (ushort)(availBefore - nextAvail);
            Invariant.Holds(popped <= (available > d.Size ? 0 : available),
                $"popped {popped} chains with {available} made available (avail.idx {availBefore}, next_avail {nextAvail}, size {d.Size})");
        }
    }

    /// <summary>After a reset and a fresh attach, one well-formed read of sector 0 must complete with OK.</summary>
    private static void CheckWellFormedRead(VirtioBlk blk, Rig rig)
    {
        var memory = rig.Memory;
        blk.Reset();
        memory.GetSpan(new GuestAddress(DefaultDesc), (int)(DefaultUsed + 0x1000 - DefaultDesc)).Clear();
        var d = new Driver { Size = 16, Desc = DefaultDesc, Avail = DefaultAvail, Used = DefaultUsed };
        var queue = Attach(blk, rig, ref d, blk.DeviceFeatures & ~VirtioFeatures.EventIdx);
        Invariant.Holds(queue is not null, "the default queue layout was refused");
        const ulong header = 0x5000, data = 0x6000, status = 0x5100;
        WriteHeader(memory, header, (byte)TypeIn, 0);
        memory.GetSpan(new GuestAddress(status), 1)[0] = 0xEE;
        WriteDesc(memory, DefaultDesc, header, HeaderSize, Virtq.DescFlagNext, 1);
        WriteDesc(memory, DefaultDesc + 16, data, SectorSize, Virtq.DescFlagNext | Virtq.DescFlagWrite, 2);
        WriteDesc(memory, DefaultDesc + 32, status, 1, Virtq.DescFlagWrite, 0);
        Publish(memory, ref d, 0);
        blk.ProcessQueue(0);
        Invariant.Holds(queue!.NextUsed == 1, $"a well-formed read after reset was not completed (used {queue.NextUsed})");
        var element = memory.GetSpan(new GuestAddress(DefaultUsed + 4), 8);
        Invariant.Holds(BinaryPrimitives.ReadUInt32LittleEndian(element) == 0 && BinaryPrimitives.ReadUInt32LittleEndian(element[4..]) == SectorSize + 1,
            "the well-formed read's used element is wrong");
        byte s = memory.GetSpan(new GuestAddress(status), 1)[0];
        Invariant.Holds(s == StatusOk, $"a well-formed read after reset completed with status {s}");
        blk.Reset();
    }

    // ---- the driver's writes --------------------------------------------------------------------------------

    private static bool Ram(GuestMemory memory, ulong address, int length, out Span<byte> span)
    {
        span = default;
        return memory.FindRegion(new GuestAddress(address), (ulong)length) is { ReadOnly: false }
            && memory.TryGetSpan(new GuestAddress(address), length, out span);
    }

    private static void WriteU16(GuestMemory memory, ulong address, ushort value)
    {
        if (Ram(memory, address, 2, out var span)) BinaryPrimitives.WriteUInt16LittleEndian(span, value);
    }

    private static ushort ReadU16(GuestMemory memory, ulong address) =>
        memory.TryGetSpan(new GuestAddress(address), 2, out var span) ? BinaryPrimitives.ReadUInt16LittleEndian(span) : (ushort)0;

    private static void WriteDesc(GuestMemory memory, ulong at, ulong addr, uint len, ushort flags, ushort next)
    {
        if (!Ram(memory, at, 16, out var raw)) return;
        BinaryPrimitives.WriteUInt64LittleEndian(raw, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[14..], next);
    }

    private static void WriteDescriptor(GuestMemory memory, ulong at, ref FuzzInput r)
    {
        uint a = r.U32();
        ulong addr = (a >> 30) switch
        {
            3 => ulong.MaxValue - (a & 0xFFFF),
            2 => RomBase + (a & 0x1_FFFF),
            _ => a & 0x1F_FFFF,
        };
        uint len = r.U16();
        byte f = r.U8();
        if ((f & 0x80) != 0) len |= 0xFFFF_0000;
        ushort flags = (ushort)((f & 7) | ((f & 8) != 0 ? 0xFFF8 : 0));
        WriteDesc(memory, at, addr, len, flags, r.U16());
    }

    private static void WriteHeader(GuestMemory memory, ulong at, byte type, uint sector)
    {
        var h = memory.GetSpan(new GuestAddress(at), HeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h, type == 0xFF ? uint.MaxValue : type & 0x7Fu);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], (type & 0x80) != 0 && type != 0xFF ? ulong.MaxValue - sector : sector);
    }

    private static void Publish(GuestMemory memory, ref Driver d, ushort head)
    {
        WriteU16(memory, d.Avail + 4 + 2 * (ulong)(d.AvailIdx % d.Size), head);
        d.AvailIdx++;
        WriteU16(memory, d.Avail + 2, d.AvailIdx);
    }

    /// <summary>Bump allocation in RAM for <see cref="Request"/>: 16-aligned, wrapping back to the start.</summary>
    private static ulong Alloc(ref Driver d, ulong bytes)
    {
        bytes = Math.Min(bytes, HeapEnd - HeapStart);
        if (d.Heap + bytes > HeapEnd) d.Heap = HeapStart;
        ulong a = d.Heap;
        d.Heap = (a + bytes + 15) & ~15UL;
        return a;
    }

    /// <summary>Lays out a whole request from a few operand bytes and publishes it; true when it asks to be processed at once.</summary>
    private static bool Request(GuestMemory memory, ref Driver d, ref FuzzInput r)
    {
        byte type = r.U8();
        ushort sector = r.U16();
        byte shape = r.U8();
        int unit = r.U8();
        uint t = type == 0xFF ? uint.MaxValue : type & 0x7Fu;
        bool ranges = t is TypeDiscard or TypeWriteZeroes;
        bool toDevice = t is TypeOut or TypeDiscard or TypeWriteZeroes;
        if ((shape & 0x80) != 0) toDevice = !toDevice;
        int dataBuffers = shape & 3;
        uint dataLength = ranges ? (uint)(unit * RangeSize) : (shape & 8) != 0 ? (uint)unit : (uint)(unit * SectorSize);
        bool statusInData = (shape & 0x10) != 0 && dataBuffers > 0 && !toDevice;

        Span<(ulong Address, uint Length, bool Writable)> bufs = stackalloc (ulong, uint, bool)[6];
        int n = 0;
        ulong header = Alloc(ref d, HeaderSize);
        WriteHeader(memory, header, type, sector);
        if ((shape & 0x40) != 0)
        {
            bufs[n++] = (header, 8, false);
            bufs[n++] = (header + 8, 8, false);
        }
        else bufs[n++] = (header, HeaderSize, false);
        for (int i = 0; i < dataBuffers; i++)
        {
            uint length = dataLength + (statusInData && i == dataBuffers - 1 ? 1u : 0);
            ulong at = Alloc(ref d, length);
            if (ranges)
            {
                for (int k = 0; k < 4 && k < unit; k++)
                {
                    var range = memory.GetSpan(new GuestAddress(at + (ulong)(RangeSize * k)), RangeSize);
                    BinaryPrimitives.WriteUInt64LittleEndian(range, r.U16());
                    BinaryPrimitives.WriteUInt32LittleEndian(range[8..], r.U16());
                    BinaryPrimitives.WriteUInt32LittleEndian(range[12..], r.U8() & 1u);
                }
            }
            bufs[n++] = (at, length, !toDevice);
        }
        if (!statusInData) bufs[n++] = (Alloc(ref d, 1), 1, true);
        var (statusAt, statusLength, _) = bufs[n - 1];
        if (Ram(memory, statusAt + statusLength - 1, 1, out var statusByte)) statusByte[0] = 0xEE;

        ushort head;
        if ((shape & 4) != 0)
        {
            ulong table = Alloc(ref d, (ulong)(16 * n));
            for (int i = 0; i < n; i++)
                WriteDesc(memory, table + 16 * (ulong)i, bufs[i].Address, bufs[i].Length,
                    (ushort)((bufs[i].Writable ? Virtq.DescFlagWrite : 0) | (i + 1 < n ? Virtq.DescFlagNext : 0)), (ushort)(i + 1));
            head = d.NextDesc;
            WriteDesc(memory, d.Desc + 16 * (ulong)head, table, (uint)(16 * n), Virtq.DescFlagIndirect, 0);
            d.NextDesc = (ushort)((head + 1) % d.Size);
        }
        else
        {
            head = d.NextDesc;
            for (int i = 0; i < n; i++)
            {
                int index = (head + i) % d.Size;
                WriteDesc(memory, d.Desc + 16 * (ulong)index, bufs[i].Address, bufs[i].Length,
                    (ushort)((bufs[i].Writable ? Virtq.DescFlagWrite : 0) | (i + 1 < n ? Virtq.DescFlagNext : 0)), (ushort)((index + 1) % d.Size));
            }
            d.NextDesc = (ushort)((head + n) % d.Size);
        }
        Publish(memory, ref d, head);
        return (shape & 0x20) != 0;
    }

    // ---- seeds ----------------------------------------------------------------------------------------------

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        const byte Process = 8, Publish = 6, Request = 11, Reset = 9, Desc = 2, Header = 4, Config = 10, Suppress = 12;
        const byte Go = 0x20; // shape: process at once

        // A 4 KiB read of sector 1 into one buffer, queue size 16.
        yield return ("read", [4, Request, (byte)TypeIn, 1, 0, 1 | Go, 8]);
        // A 1 KiB write from two buffers, then a read of it back through an indirect table.
        yield return ("write-read-back", [4, Request, (byte)TypeOut, 2, 0, 2 | Go, 1, Request, (byte)TypeIn, 2, 0, 2 | 4 | Go, 1]);
        // EVENT_IDX, queue size 64: a batch of a flush, a GET_ID (status in its buffer) and a two-descriptor-header read, one kick.
        yield return ("event-idx-batch", [0x10 | 6, Suppress, 1, 2, 0, Request, (byte)TypeFlush, 0, 0, 0, 0,
            Request, (byte)TypeGetId, 0, 0, 1 | 8 | 0x10, 20, Request, (byte)TypeIn, 7, 0, 3 | 0x40, 1, Process, 0]);
        // DISCARD and WRITE_ZEROES (with UNMAP) of a few ranges, max_discard_seg 32.
        yield return ("discard-write-zeroes", [0x80 | 4, 0x02 | 0x08, Request, (byte)TypeDiscard, 0, 0, 1 | Go, 2, 8, 0, 8, 0, 0, 32, 0, 4, 0, 0,
            Request, (byte)TypeWriteZeroes, 0, 0, 1 | Go, 1, 64, 0, 16, 0, 1]);
        // The same read written by hand: header, three descriptors, publish, process; then a config read.
        yield return ("raw-read", [3, Header, 0x00, 0x50, 0x00, (byte)TypeIn, 3, 0, 0, 0,
            Desc, 0, 0, 0x00, 0x50, 0x00, 0x00, 16, 0, 1, 1, 0,
            Desc, 1, 0, 0x00, 0x60, 0x00, 0x00, 0x00, 0x02, 3, 2, 0,
            Desc, 2, 0, 0x00, 0x51, 0x00, 0x00, 1, 0, 2, 0, 0,
            Publish, 0, 0, Process, 0, Config, 0, 3]);
        // A read on a read-only disk, a refused write, a reset with fresh rings, another read; custom ring layout.
        yield return ("read-only-reset", [0x20 | 0x40 | 3, 0x00, 0x02, 0x00, 0x03, 0x80, 0x03,
            Request, (byte)TypeOut, 0, 0, 1 | Go, 1, Request, (byte)TypeIn, 0, 0, 1 | Go, 1, Reset, 1, Request, (byte)TypeIn, 9, 0, 1 | Go, 2]);
    }

    // ---- input, disk ----------------------------------------------------------------------------------------

}

/// <summary>
/// A scratch disk image for the storage targets: created with a position-dependent pattern, opened through the public
/// path (the entrypoint gate with SELinux checks disabled, then <see cref="DiskOpener"/>) as a buffered
/// <see cref="RawDisk"/>, and unlinked at once, so nothing is left behind however the process ends.
/// </summary>
internal static class ScratchImage
{
    /// <summary>Returns the disk and a read-only handle on the same (unlinked) file, to watch its size.</summary>
    public static (RawDisk Disk, SafeFileHandle Image) Open(string tag, int size)
    {
        // tmpfs when there is one: guest FLUSHes are fdatasync, free there, milliseconds on a real disk.
        string dir = Directory.Exists("/dev/shm") ? "/dev/shm" : Directory.Exists("/var/tmp") ? "/var/tmp" : Path.GetTempPath();
        string path = Path.Combine(dir, $"csvmm-fuzz-{tag}-{Environment.ProcessId}-{Guid.NewGuid():N}.img");
        var bytes = new byte[size];
        for (int i = 0; i < size; i++) bytes[i] = (byte)(i * 131 + (i >> 9) * 7 + 1);
        File.WriteAllBytes(path, bytes);
        try
        {
            var image = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var gate = new DiskGate(new SecurityOptions(EnforcementMode.Disabled, "", "", "", TrustXattr: false), Serilog.Core.Logger.None);
            using var outcome = gate.Admit([path]);
            Invariant.Holds(outcome.Disks.Count == 1, $"the disk gate did not admit the scratch image: {outcome.Refusal}");
            return (DiskOpener.Open(outcome.Disks[0], readOnly: false, DiskCacheMode.Writeback), image);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary>A read-only view of a disk: what a disk opened read-only looks like to the device.</summary>
internal sealed class ReadOnlyDiskView(IDiskBackend inner) : IDiskBackend
{
    public ulong SizeBytes => inner.SizeBytes;
    public bool ReadOnly => true;
    public int LogicalBlockSize => inner.LogicalBlockSize;
    public string Describe => inner.Describe + " (read-only view)";
    public DiskCounters Counters => inner.Counters;
    public DiskIoResult Read(ulong offset, Span<byte> destination) => inner.Read(offset, destination);
    public DiskIoResult ReadVectored(ulong offset, ReadOnlySpan<IoVector> buffers) => inner.ReadVectored(offset, buffers);
    public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source) => DiskIoResult.ReadOnlyDisk;
    public DiskIoResult WriteVectored(ulong offset, ReadOnlySpan<IoVector> buffers) => DiskIoResult.ReadOnlyDisk;
    public DiskIoResult Flush() => inner.Flush();
    public DiskIoResult Discard(ulong offset, ulong length) => DiskIoResult.ReadOnlyDisk;
    public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap) => DiskIoResult.ReadOnlyDisk;
    public void Dispose() { }
}
