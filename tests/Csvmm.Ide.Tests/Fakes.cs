using Csvmm.Block;
using Csvmm.Devices;

namespace Csvmm.Ide.Tests;

/// <summary>A disk on a byte array, or a sparse one that only claims a size (reads zeroes, keeps writes per sector).</summary>
internal sealed class FakeDisk : IDiskBackend
{
    private readonly byte[]? _data;
    private readonly Dictionary<ulong, byte[]> _sparse = new();

    public FakeDisk(int sectors, bool readOnly = false)
    {
        _data = new byte[sectors * 512];
        for (int i = 0; i < _data.Length; i++) _data[i] = (byte)(i * 7 + i / 512);
        SizeBytes = (ulong)_data.Length;
        ReadOnly = readOnly;
    }

    private FakeDisk(ulong sizeBytes)
    {
        SizeBytes = sizeBytes;
    }

    public static FakeDisk Sparse(ulong sectors) => new(sectors * 512);

    public byte[] Data => _data ?? throw new InvalidOperationException("sparse disk");
    public ulong SizeBytes { get; }
    public bool ReadOnly { get; }
    public int LogicalBlockSize => 512;
    public string Describe => "fake";
    public DiskCounters Counters { get; } = new();
    public DiskIoResult? FailWith { get; set; }
    public int Flushes { get; private set; }
    public int Writes { get; private set; }
    public int Reads { get; private set; }
    public int VectoredReads { get; private set; }
    public int VectoredWrites { get; private set; }

    /// <summary>Buffer count and byte total of the last vectored request.</summary>
    public (int Buffers, ulong Bytes) LastVectored { get; private set; }

    public DiskIoResult Read(ulong offset, Span<byte> destination)
    {
        if (FailWith is { } f) return f;
        Reads++;
        if (offset + (ulong)destination.Length > SizeBytes) return DiskIoResult.OutOfRange;
        if (_data is not null) { _data.AsSpan((int)offset, destination.Length).CopyTo(destination); return DiskIoResult.Ok; }
        for (int i = 0; i < destination.Length; i += 512)
        {
            ulong sector = (offset + (ulong)i) / 512;
            if (_sparse.TryGetValue(sector, out byte[]? s)) s.CopyTo(destination.Slice(i, 512));
            else destination.Slice(i, 512).Fill((byte)sector);
        }
        return DiskIoResult.Ok;
    }

    public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source)
    {
        if (FailWith is { } f) return f;
        if (ReadOnly) return DiskIoResult.ReadOnlyDisk;
        if (offset + (ulong)source.Length > SizeBytes) return DiskIoResult.OutOfRange;
        Writes++;
        if (_data is not null) { source.CopyTo(_data.AsSpan((int)offset)); return DiskIoResult.Ok; }
        for (int i = 0; i < source.Length; i += 512) _sparse[(offset + (ulong)i) / 512] = source.Slice(i, 512).ToArray();
        return DiskIoResult.Ok;
    }

    /// <summary>One counted request; the buffers are then filled by <see cref="Read"/>-equivalent copies.</summary>
    public DiskIoResult ReadVectored(ulong offset, ReadOnlySpan<IoVector> buffers)
    {
        VectoredReads++;
        return Vectored(offset, buffers, write: false);
    }

    public DiskIoResult WriteVectored(ulong offset, ReadOnlySpan<IoVector> buffers)
    {
        VectoredWrites++;
        return Vectored(offset, buffers, write: true);
    }

    private DiskIoResult Vectored(ulong offset, ReadOnlySpan<IoVector> buffers, bool write)
    {
        IoVector.TryTotal(buffers, out ulong total);
        LastVectored = (buffers.Length, total);
        if (FailWith is { } f) return f;
        if (write && ReadOnly) return DiskIoResult.ReadOnlyDisk;
        if (offset > SizeBytes || total > SizeBytes - offset) return DiskIoResult.OutOfRange;
        int reads = Reads, writes = Writes;
        foreach (var b in buffers)
        {
            DiskIoResult r = write ? Write(offset, b.AsSpan()) : Read(offset, b.AsSpan());
            if (!r.IsOk) return r;
            offset += b.Length;
        }
        (Reads, Writes) = (reads, writes); // the per-buffer copies are not requests of their own
        return DiskIoResult.Ok;
    }

    public DiskIoResult Flush()
    {
        if (FailWith is { } f) return f;
        Flushes++;
        return DiskIoResult.Ok;
    }

    public DiskIoResult Discard(ulong offset, ulong length) => DiskIoResult.Ok;
    public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap) => DiskIoResult.Unsupported;
    public void Dispose() { }
}

internal sealed class RecordingIrq : IIrqLine
{
    public bool Level { get; private set; }
    public int Raises { get; private set; }
    public void Set(bool level)
    {
        if (level && !Level) Raises++;
        Level = level;
    }
}

/// <summary>Drives an <see cref="IdeChannel"/> the way a guest driver does.</summary>
internal sealed class Harness
{
    public Harness(IDiskBackend? master, IDiskBackend? slave = null)
    {
        Channel = new IdeChannel(Irq, master is null ? null : new IdeDrive(master, "SERIAL-M"), slave is null ? null : new IdeDrive(slave, "SERIAL-S"));
    }

    public RecordingIrq Irq { get; } = new();
    public IdeChannel Channel { get; }

    public byte In(int port)
    {
        Span<byte> b = stackalloc byte[1];
        Channel.CommandBlock.Read((ulong)port, b);
        return b[0];
    }

    public void Out(int port, byte value) => Channel.CommandBlock.Write((ulong)port, [value]);

    public byte Status() => In(7);

    public byte AltStatus()
    {
        Span<byte> b = stackalloc byte[1];
        Channel.ControlBlock.Read(0, b);
        return b[0];
    }

    public void Control(byte value) => Channel.ControlBlock.Write(0, [value]);

    public ushort InData()
    {
        Span<byte> b = stackalloc byte[2];
        Channel.CommandBlock.Read(0, b);
        return (ushort)(b[0] | (b[1] << 8));
    }

    public void OutData(ushort v) => Channel.CommandBlock.Write(0, [(byte)v, (byte)(v >> 8)]);

    public byte[] ReadBlock(int bytes)
    {
        var r = new byte[bytes];
        for (int i = 0; i < bytes; i += 2)
        {
            ushort w = InData();
            r[i] = (byte)w;
            r[i + 1] = (byte)(w >> 8);
        }
        return r;
    }

    public void WriteBlock(ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i += 2) OutData((ushort)(data[i] | (data[i + 1] << 8)));
    }

    public void Lba28(uint lba, byte count, int drive = 0)
    {
        Out(6, (byte)(0xE0 | (drive << 4) | (int)((lba >> 24) & 0xF)));
        Out(2, count);
        Out(3, (byte)lba);
        Out(4, (byte)(lba >> 8));
        Out(5, (byte)(lba >> 16));
    }

    public void Lba48(ulong lba, ushort count)
    {
        Out(6, 0x40);
        Out(2, (byte)(count >> 8));
        Out(3, (byte)(lba >> 24));
        Out(4, (byte)(lba >> 32));
        Out(5, (byte)(lba >> 40));
        Out(2, (byte)count);
        Out(3, (byte)lba);
        Out(4, (byte)(lba >> 8));
        Out(5, (byte)(lba >> 16));
    }

    public void Command(byte command) => Out(7, command);
}
