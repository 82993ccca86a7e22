using System.Buffers.Binary;

namespace Csvmm.TinyGuests;

/// <summary>Which disk controller the guest looks for on PCI bus 0 and how it drives it.</summary>
public enum DiskInterface
{
    /// <summary>virtio-blk, modern PCI (1af4:1042, or transitional 1af4:1001 with the virtio 1.x capabilities).</summary>
    Virtio = 1,

    /// <summary>PCI IDE (class 01:01, e.g. PIIX3 8086:7010) at the legacy ports, PIO data transfers.</summary>
    IdePio = 2,

    /// <summary>PCI IDE with bus-master DMA through BAR4 and a PRD table.</summary>
    IdeDma = 3,
}

/// <summary>What one entry of the guest's operation list does.</summary>
public enum DiskOpKind : uint
{
    /// <summary>Read <c>Count</c> sectors from <c>Lba</c> and compare them with <see cref="DiskPattern"/> under <c>Seed</c>.</summary>
    ReadVerify = 1,

    /// <summary>Write the pattern under <c>Seed</c> to <c>Count</c> sectors from <c>Lba</c>.</summary>
    Write = 2,

    /// <summary>Flush the device's write cache (virtio FLUSH, ATA FLUSH CACHE [EXT]).</summary>
    Flush = 3,

    /// <summary>Write the pattern to the first chunk of the range; the device must report an error.</summary>
    WriteExpectFailure = 4,

    /// <summary>
    /// Benchmark: <c>Count</c> reads of <c>RequestSectors</c> each, from <c>Lba</c> upwards, <c>QueueDepth</c> in flight
    /// (virtio; IDE always 1). Prints <c>BENCH seq-start</c> and <c>BENCH seq-done N</c>.
    /// </summary>
    BenchSequential = 5,

    /// <summary>
    /// Benchmark: <c>Count</c> reads of <c>RequestSectors</c> at random request-aligned LBAs (xorshift64 from
    /// <c>Seed</c>) below <c>Lba</c> sectors (0: the whole disk). Prints <c>BENCH rand-start</c> and <c>BENCH rand-done N</c>.
    /// </summary>
    BenchRandom = 6,
}

/// <summary>One entry of the operation list patched into the image.</summary>
public readonly record struct DiskOp(DiskOpKind Kind, ulong Lba, ulong Count, ulong Seed = 0, uint RequestSectors = 0, uint QueueDepth = 0)
{
    public static DiskOp ReadVerify(ulong lba, ulong sectors, ulong seed) => new(DiskOpKind.ReadVerify, lba, sectors, seed);
    public static DiskOp Write(ulong lba, ulong sectors, ulong seed) => new(DiskOpKind.Write, lba, sectors, seed);
    public static DiskOp Flush() => new(DiskOpKind.Flush, 0, 0);
    public static DiskOp WriteExpectFailure(ulong lba, ulong sectors, ulong seed) => new(DiskOpKind.WriteExpectFailure, lba, sectors, seed);

    /// <summary><paramref name="requests"/> sequential reads of <paramref name="requestSectors"/> starting at <paramref name="startLba"/>.</summary>
    public static DiskOp BenchSequential(ulong startLba, ulong requests, uint requestSectors, uint queueDepth) =>
        new(DiskOpKind.BenchSequential, startLba, requests, 0, requestSectors, queueDepth);

    /// <summary><paramref name="requests"/> random reads below <paramref name="rangeSectors"/> (0: whole disk).</summary>
    public static DiskOp BenchRandom(ulong requests, uint requestSectors, uint queueDepth, ulong seed, ulong rangeSectors = 0) =>
        new(DiskOpKind.BenchRandom, rangeSectors, requests, seed, requestSectors, queueDepth);
}

/// <summary>Everything that varies between disk guests; encoded into the image's operation block by <see cref="DiskGuest.Build"/>.</summary>
public sealed record DiskGuestOptions
{
    /// <summary>The controller to find and drive.</summary>
    public required DiskInterface Interface { get; init; }

    /// <summary>What to do, in order; the guest prints <c>PASS</c> after the last one, or stops at the first <c>FAIL</c>.</summary>
    public required IReadOnlyList<DiskOp> Operations { get; init; }

    /// <summary>Sectors per request for ReadVerify / Write (1 to 256; the guest's data buffer holds 256).</summary>
    public int ChunkSectors { get; init; } = 256;

    /// <summary>IDE: use the LBA48 commands (…EXT) even where LBA28 would do.</summary>
    public bool ForceLba48 { get; init; }

    /// <summary>IDE: the secondary channel (0x170/0x376, BM BAR + 8) instead of the primary (0x1F0/0x3F6).</summary>
    public bool SecondaryChannel { get; init; }

    /// <summary>IDE: drive 1 (slave) instead of drive 0.</summary>
    public bool Slave { get; init; }

    /// <summary>IDE PIO: 0 for READ/WRITE SECTORS; N (2-128, a power of two) for SET MULTIPLE MODE N and READ/WRITE MULTIPLE.</summary>
    public int PioMultiple { get; init; }

    /// <summary>
    /// IDE DMA: <c>pause</c> instructions the guest spins between two reads of the bus-master status while a transfer
    /// runs (every read is a VM exit; under QEMU each one also takes the lock the DMA completion needs). 0 = read back to back.
    /// </summary>
    public int IdePollPauses { get; init; }

    /// <summary>Guest poll timeout in seconds (rdtsc, assuming a TSC of at most 4 GHz; the guest may wait less on a slower TSC).</summary>
    public int TimeoutSeconds { get; init; } = 15;

    /// <summary>Checks the options and writes the operation block (<see cref="GuestLayout.OpBlockSize"/> bytes).</summary>
    internal byte[] Encode()
    {
        if (!Enum.IsDefined(Interface)) throw new ArgumentOutOfRangeException(nameof(Interface), Interface, "unknown interface");
        if (ChunkSectors is < 1 or > GuestLayout.MaxChunkSectors)
            throw new ArgumentOutOfRangeException(nameof(ChunkSectors), ChunkSectors, $"must be 1..{GuestLayout.MaxChunkSectors}");
        if (PioMultiple != 0 && (PioMultiple is < 2 or > 128 || (PioMultiple & (PioMultiple - 1)) != 0))
            throw new ArgumentOutOfRangeException(nameof(PioMultiple), PioMultiple, "must be 0 or a power of two from 2 to 128");
        if (Operations.Count > GuestLayout.MaxOps)
            throw new ArgumentOutOfRangeException(nameof(Operations), Operations.Count, $"at most {GuestLayout.MaxOps} operations fit the block");
        if (TimeoutSeconds is < 1 or > 3600) throw new ArgumentOutOfRangeException(nameof(TimeoutSeconds));
        if (IdePollPauses is < 0 or > 1_000_000) throw new ArgumentOutOfRangeException(nameof(IdePollPauses));

        var block = new byte[GuestLayout.OpBlockSize];
        Span<byte> h = block;
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrMagic..], GuestLayout.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrInterface..], (uint)Interface);
        uint flags = (ForceLba48 ? GuestLayout.FlagForceLba48 : 0) | (SecondaryChannel ? GuestLayout.FlagSecondary : 0) | (Slave ? GuestLayout.FlagSlave : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrFlags..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrChunk..], (uint)ChunkSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrPioMultiple..], (uint)PioMultiple);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrOpCount..], (uint)Operations.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(h[GuestLayout.HdrTimeout..], (ulong)TimeoutSeconds * 4_000_000_000UL);
        BinaryPrimitives.WriteUInt32LittleEndian(h[GuestLayout.HdrPollPauses..], (uint)IdePollPauses);

        for (int i = 0; i < Operations.Count; i++)
        {
            DiskOp op = Operations[i];
            CheckOp(op, i);
            Span<byte> e = block.AsSpan(GuestLayout.OpHeaderSize + i * GuestLayout.OpSize, GuestLayout.OpSize);
            BinaryPrimitives.WriteUInt32LittleEndian(e[GuestLayout.OpKind..], (uint)op.Kind);
            BinaryPrimitives.WriteUInt16LittleEndian(e[GuestLayout.OpRequestSectors..], (ushort)op.RequestSectors);
            BinaryPrimitives.WriteUInt16LittleEndian(e[GuestLayout.OpQueueDepth..], (ushort)op.QueueDepth);
            BinaryPrimitives.WriteUInt64LittleEndian(e[GuestLayout.OpLba..], op.Lba);
            BinaryPrimitives.WriteUInt64LittleEndian(e[GuestLayout.OpCount..], op.Count);
            BinaryPrimitives.WriteUInt64LittleEndian(e[GuestLayout.OpSeed..], op.Seed);
        }
        return block;
    }

    private static void CheckOp(DiskOp op, int index)
    {
        string where = $"operation {index} ({op.Kind})";
        switch (op.Kind)
        {
            case DiskOpKind.ReadVerify or DiskOpKind.Write or DiskOpKind.WriteExpectFailure:
                if (op.Count == 0) throw new ArgumentException($"{where}: no sectors");
                if (op.Lba >= 1UL << 48 || op.Count >= 1UL << 48) throw new ArgumentException($"{where}: LBA range beyond 2^48");
                break;
            case DiskOpKind.Flush:
                break;
            case DiskOpKind.BenchSequential or DiskOpKind.BenchRandom:
                if (op.Count == 0) throw new ArgumentException($"{where}: no requests");
                if (op.RequestSectors is < 1 or > GuestLayout.MaxBenchRequestSectors)
                    throw new ArgumentException($"{where}: request size must be 1..{GuestLayout.MaxBenchRequestSectors} sectors");
                if (op.QueueDepth is < 1 or > GuestLayout.MaxQueueDepth)
                    throw new ArgumentException($"{where}: queue depth must be 1..{GuestLayout.MaxQueueDepth}");
                if ((ulong)op.QueueDepth * op.RequestSectors * 512 > GuestLayout.DataBufferBytes)
                    throw new ArgumentException($"{where}: queue depth × request size exceeds the {GuestLayout.DataBufferBytes >> 20} MiB data buffer");
                if (op.Kind == DiskOpKind.BenchRandom && op.Seed == 0) throw new ArgumentException($"{where}: xorshift needs a non-zero seed");
                break;
            default:
                throw new ArgumentException($"{where}: unknown kind");
        }
    }
}
