using System.Buffers.Binary;
using Csvmm.Devices.State;

namespace Csvmm.Machine.Snapshot;

/// <summary>A snapshot file that cannot be used: truncated, corrupted, of another version, or describing an impossible machine.</summary>
public sealed class SnapshotException(string message) : Exception(message);

/// <summary>What a section of a snapshot holds.</summary>
public enum SectionKind : uint
{
    /// <summary>The machine's <see cref="MachineSpec"/> (exactly one).</summary>
    Spec = 0x43455053,     // "SPEC"
    /// <summary>Every device model's state (<see cref="DeviceStateSet"/>; at most one).</summary>
    Devices = 0x53564544,  // "DEVS"
    /// <summary>One vCPU's registers and KVM state; index = vCPU number.</summary>
    Vcpu = 0x55504356,     // "VCPU"
    /// <summary>The in-kernel PICs and IOAPIC (at most one).</summary>
    Irqchip = 0x43515249,  // "IRQC"
    /// <summary>The in-kernel PIT (at most one).</summary>
    Pit = 0x32544950,      // "PIT2"
    /// <summary>kvmclock (at most one).</summary>
    Clock = 0x4B4C4343,    // "CCLK"
    /// <summary>One guest RAM region's bytes, page-aligned in the file so it can be mapped; index = region number.</summary>
    Ram = 0x204D4152,      // "RAM "
}

/// <summary>One section's place in the file.</summary>
public readonly record struct SnapshotSection(SectionKind Kind, uint Index, long Offset, long Length, uint Crc);

/// <summary>
/// csvmm's snapshot file, version 1 (all integers little-endian):
/// <code>
/// header (40 bytes): "CSVMMSNP", u16 version = 1, u16 flags = 0, u32 section count, u64 file length,
///                    u64 table offset, u32 table CRC-32C, u32 header CRC-32C (of the 36 bytes before it)
/// sections:          payloads, each 8-byte aligned (RAM 4096-byte aligned), in table order
/// table:             per section 32 bytes: u32 kind, u32 index, u64 offset, u64 length, u32 payload CRC-32C, u32 zero
/// </code>
/// Everything is checked before anything is used: magic, version, both CRCs, that the file is exactly as long as it
/// says, that every section lies between the header and the table without overlapping another, that kinds and indexes
/// make sense (one spec, unique kind+index, bounded counts), and each section's CRC when it is read. A file that fails
/// any check is refused as a whole. RAM payload CRCs are checked by <see cref="SnapshotReader.VerifyRam"/> (restore may
/// map RAM from the file instead of reading it).
/// </summary>
public static class SnapshotFormat
{
    public static ReadOnlySpan<byte> Magic => "CSVMMSNP"u8;
    public const ushort Version = 1;
    public const int HeaderLength = 40;
    public const int TableEntryLength = 32;
    public const int MaxSections = 4096;
    public const int PageAlignment = 4096;
    /// <summary>Largest non-RAM section: the spec, device states and a vCPU's state are far smaller.</summary>
    public const long MaxSmallSection = 16 << 20;

    internal static uint Crc(ReadOnlySpan<byte> data) => Crc32C.Compute(data);

    internal static bool Known(SectionKind k) => Enum.IsDefined(k);
}

/// <summary>
/// Writes a snapshot: sections in order, then the table and the header. The file is written as PATH.tmp and renamed
/// over PATH only after it is complete and flushed to disk, so a crash never leaves a half snapshot under PATH.
/// </summary>
public sealed class SnapshotWriter : IDisposable
{
    private readonly string _path, _tmp;
    private readonly FileStream _file;
    private readonly List<SnapshotSection> _sections = [];
    private bool _done;

    public SnapshotWriter(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        _path = path;
        _tmp = path + ".tmp";
        _file = new FileStream(_tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        _file.Write(new byte[SnapshotFormat.HeaderLength]);
    }

    /// <summary>Appends a section.</summary>
    public void Add(SectionKind kind, uint index, ReadOnlySpan<byte> payload)
    {
        if (!SnapshotFormat.Known(kind)) throw new ArgumentOutOfRangeException(nameof(kind));
        if (kind != SectionKind.Ram && payload.Length > SnapshotFormat.MaxSmallSection)
            throw new ArgumentException($"{kind} section of {payload.Length} bytes is larger than {SnapshotFormat.MaxSmallSection}");
        if (_sections.Count == SnapshotFormat.MaxSections) throw new InvalidOperationException("too many sections");
        Pad(kind == SectionKind.Ram ? SnapshotFormat.PageAlignment : 8);
        long offset = _file.Position;
        _file.Write(payload);
        _sections.Add(new SnapshotSection(kind, index, offset, payload.Length, SnapshotFormat.Crc(payload)));
    }

    /// <summary>Bytes of RAM a hole may skip at a time: a run of this many zero bytes is not written.</summary>
    public const int HoleGranularity = 64 << 10;

    private static readonly uint[] ZeroChunk = Crc32C.ZerosOperator(HoleGranularity);

    /// <summary>RAM bytes left out of the file as holes (all zero) so far.</summary>
    public long HoleBytes { get; private set; }

    /// <summary>
    /// Appends a RAM section straight from guest memory (any size; CRC computed on the way). Zero runs of
    /// <see cref="HoleGranularity"/> are not written but skipped, leaving holes in the file (a sparse file: a guest's
    /// never-written RAM costs neither writes nor disk blocks); they read back as zeros, so the format is unchanged.
    /// </summary>
    public unsafe void AddRam(uint index, nint address, long length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        if (_sections.Count == SnapshotFormat.MaxSections) throw new InvalidOperationException("too many sections");
        Pad(SnapshotFormat.PageAlignment);
        long offset = _file.Position;
        uint crc = Crc32C.Start;
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(HoleGranularity, length - done);
            var chunk = new ReadOnlySpan<byte>((byte*)address + done, n);
            if (chunk.IndexOfAnyExcept((byte)0) < 0)
            {
                // A zero chunk: not written, and its CRC is one 32x32 bit-matrix product, not 64 KiB of CRC32 instructions.
                crc = n == HoleGranularity ? Crc32C.ApplyZeros(ZeroChunk, crc) : Crc32C.AppendZeros(crc, n);
                _file.Seek(n, SeekOrigin.Current);
                HoleBytes += n;
            }
            else
            {
                crc = Crc32C.Append(crc, chunk);
                _file.Write(chunk);
            }
            done += n;
        }
        _sections.Add(new SnapshotSection(SectionKind.Ram, index, offset, length, Crc32C.Finish(crc)));
    }

    private void Pad(int alignment)
    {
        long pad = (alignment - _file.Position % alignment) % alignment;
        if (pad > 0) _file.Write(new byte[pad]);
    }

    /// <summary>Writes the table and header, flushes, and renames the file into place.</summary>
    public void Finish()
    {
        // The table ends the file, and the file is a whole number of 4 KiB pages: the disk gate, which a snapshot
        // passes through on restore like a disk image, only admits files of whole 512-byte sectors.
        var table = new byte[_sections.Count * SnapshotFormat.TableEntryLength];
        Pad(8);
        long slack = (SnapshotFormat.PageAlignment - (_file.Position + table.Length) % SnapshotFormat.PageAlignment) % SnapshotFormat.PageAlignment;
        if (slack > 0) _file.Write(new byte[slack]);
        long tableOffset = _file.Position;
        for (int i = 0; i < _sections.Count; i++)
        {
            var e = table.AsSpan(i * SnapshotFormat.TableEntryLength);
            var s = _sections[i];
            BinaryPrimitives.WriteUInt32LittleEndian(e, (uint)s.Kind);
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], s.Index);
            BinaryPrimitives.WriteInt64LittleEndian(e[8..], s.Offset);
            BinaryPrimitives.WriteInt64LittleEndian(e[16..], s.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[24..], s.Crc);
        }
        _file.Write(table);
        long length = _file.Position;
        var header = new byte[SnapshotFormat.HeaderLength];
        SnapshotFormat.Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(8), SnapshotFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)_sections.Count);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), length);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(24), tableOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(32), SnapshotFormat.Crc(table));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(36), SnapshotFormat.Crc(header.AsSpan(0, 36)));
        _file.Position = 0;
        _file.Write(header);
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        File.Move(_tmp, _path, overwrite: true);
        _done = true;
    }

    public void Dispose()
    {
        _file.Dispose();
        if (!_done)
            try { File.Delete(_tmp); } catch (IOException) { }
    }
}

/// <summary>Opens and checks a snapshot (see <see cref="SnapshotFormat"/>); sections are read on demand, each checked.</summary>
public sealed class SnapshotReader : IDisposable
{
    private readonly FileStream _file;

    private SnapshotReader(FileStream file, IReadOnlyList<SnapshotSection> sections)
    {
        _file = file;
        Sections = sections;
    }

    /// <summary>The sections, in file order.</summary>
    public IReadOnlyList<SnapshotSection> Sections { get; }

    /// <summary>The file's path.</summary>
    public string Path => _file.Name;

    /// <summary>Opens <paramref name="path"/> and checks its header and table.</summary>
    /// <exception cref="SnapshotException">The file is not a usable snapshot.</exception>
    public static SnapshotReader Open(string path)
    {
        FileStream file;
        try { file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SnapshotException($"{path}: {e.Message}"); }
        try
        {
            return new SnapshotReader(file, ReadTable(file, path));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static List<SnapshotSection> ReadTable(FileStream file, string path)
    {
        void Check(bool ok, string what)
        {
            if (!ok) throw new SnapshotException($"{path}: not a usable csvmm snapshot: {what}");
        }
        long size = file.Length;
        Check(size >= SnapshotFormat.HeaderLength, $"{size} bytes is shorter than the header");
        var header = new byte[SnapshotFormat.HeaderLength];
        file.ReadExactly(header);
        Check(header.AsSpan(0, 8).SequenceEqual(SnapshotFormat.Magic), "bad magic");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(8));
        Check(version == SnapshotFormat.Version, $"version {version}, this csvmm reads version {SnapshotFormat.Version}");
        Check(BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(36)) == SnapshotFormat.Crc(header.AsSpan(0, 36)), "header checksum mismatch");
        Check(BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(10)) == 0, "unknown flags");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
        long length = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16));
        long tableOffset = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(24));
        uint tableCrc = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(32));
        Check(length == size, $"the header says {length} bytes, the file has {size} (truncated or extended)");
        Check(count >= 1 && count <= SnapshotFormat.MaxSections, $"{count} sections");
        long tableLength = (long)count * SnapshotFormat.TableEntryLength;
        Check(tableOffset >= SnapshotFormat.HeaderLength && tableOffset <= size && size - tableOffset == tableLength,
            "the section table is not at the end of the file");
        var table = new byte[tableLength];
        file.Position = tableOffset;
        file.ReadExactly(table);
        Check(SnapshotFormat.Crc(table) == tableCrc, "section table checksum mismatch");

        var sections = new List<SnapshotSection>((int)count);
        var seen = new HashSet<(SectionKind, uint)>();
        long end = SnapshotFormat.HeaderLength;
        for (int i = 0; i < count; i++)
        {
            var e = table.AsSpan(i * SnapshotFormat.TableEntryLength, SnapshotFormat.TableEntryLength);
            var kind = (SectionKind)BinaryPrimitives.ReadUInt32LittleEndian(e);
            uint index = BinaryPrimitives.ReadUInt32LittleEndian(e[4..]);
            long offset = BinaryPrimitives.ReadInt64LittleEndian(e[8..]);
            long len = BinaryPrimitives.ReadInt64LittleEndian(e[16..]);
            uint crc = BinaryPrimitives.ReadUInt32LittleEndian(e[24..]);
            Check(SnapshotFormat.Known(kind), $"section {i} has unknown kind 0x{(uint)kind:x8}");
            Check(BinaryPrimitives.ReadUInt32LittleEndian(e[28..]) == 0, $"section {i} has reserved bits set");
            Check(offset >= end && len >= 0 && len <= tableOffset - offset, $"section {i} ({kind}) lies outside its room or overlaps another");
            Check(kind != SectionKind.Ram || offset % SnapshotFormat.PageAlignment == 0, $"RAM section {index} is not page-aligned");
            Check(kind == SectionKind.Ram || len <= SnapshotFormat.MaxSmallSection, $"{kind} section of {len} bytes is too large");
            Check(kind is SectionKind.Vcpu or SectionKind.Ram || index == 0, $"{kind} section with index {index}");
            Check(seen.Add((kind, index)), $"two {kind} sections with index {index}");
            sections.Add(new SnapshotSection(kind, index, offset, len, crc));
            end = offset + len;
        }
        Check(sections.Count(s => s.Kind == SectionKind.Spec) == 1, "no machine spec section");
        return sections;
    }

    /// <summary>The payload of a non-RAM section, checked against its CRC.</summary>
    public byte[] Read(SnapshotSection section)
    {
        if (section.Kind == SectionKind.Ram) throw new ArgumentException("RAM sections are mapped or copied, not read whole");
        var data = new byte[section.Length];
        _file.Position = section.Offset;
        _file.ReadExactly(data);
        if (SnapshotFormat.Crc(data) != section.Crc)
            throw new SnapshotException($"{_file.Name}: {section.Kind} section {section.Index} checksum mismatch (corrupted)");
        return data;
    }

    /// <summary>The one section of <paramref name="kind"/> and <paramref name="index"/>, or null.</summary>
    public SnapshotSection? Find(SectionKind kind, uint index = 0)
    {
        foreach (var s in Sections)
            if (s.Kind == kind && s.Index == index) return s;
        return null;
    }

    /// <summary>Copies a RAM section into <paramref name="destination"/> (exactly its length) and checks its CRC.</summary>
    public void ReadRam(SnapshotSection section, Span<byte> destination)
    {
        if (section.Kind != SectionKind.Ram) throw new ArgumentException("not a RAM section");
        if (destination.Length != section.Length)
            throw new SnapshotException($"{_file.Name}: RAM section {section.Index} has {section.Length} bytes, the machine's region {destination.Length}");
        _file.Position = section.Offset;
        _file.ReadExactly(destination);
        if (SnapshotFormat.Crc(destination) != section.Crc)
            throw new SnapshotException($"{_file.Name}: RAM section {section.Index} checksum mismatch (corrupted)");
    }

    /// <summary>Checks a RAM section's CRC without keeping its bytes (for a restore that maps RAM from the file).</summary>
    public void VerifyRam(SnapshotSection section)
    {
        var buffer = new byte[1 << 20];
        uint crc = Crc32C.Start;
        _file.Position = section.Offset;
        for (long left = section.Length; left > 0;)
        {
            int n = (int)Math.Min(buffer.Length, left);
            _file.ReadExactly(buffer, 0, n);
            crc = Crc32C.Append(crc, buffer.AsSpan(0, n));
            left -= n;
        }
        if (Crc32C.Finish(crc) != section.Crc)
            throw new SnapshotException($"{_file.Name}: RAM section {section.Index} checksum mismatch (corrupted)");
    }

    /// <summary>RAM bytes the last <see cref="ReadRamInto"/> found as holes (not read, not touched).</summary>
    public long HoleBytesSkipped { get; private set; }

    /// <summary>
    /// Copies a RAM section into guest memory at <paramref name="address"/> (exactly <paramref name="length"/> bytes,
    /// private anonymous memory) and checks its CRC. The file's holes (SEEK_DATA / SEEK_HOLE) are not read: that guest
    /// memory is dropped to zero-fill-on-demand (MADV_DONTNEED) and the CRC extended over the zeros arithmetically, so
    /// RAM the guest never wrote costs neither reads nor page faults.
    /// </summary>
    public unsafe void ReadRamInto(SnapshotSection section, nint address, long length)
    {
        if (section.Kind != SectionKind.Ram) throw new ArgumentException("not a RAM section");
        if (length != section.Length)
            throw new SnapshotException($"{_file.Name}: RAM section {section.Index} has {section.Length} bytes, the machine's region {length}");
        uint crc = Crc32C.Start;
        long start = section.Offset, end = section.Offset + length;
        HoleBytesSkipped = 0;
        for (long pos = start; pos < end;)
        {
            long data = Seek(pos, SeekData, end);
            if (data > pos)
            {
                Zero((byte*)address + (pos - start), data - pos);
                crc = Crc32C.AppendZeros(crc, data - pos);
                HoleBytesSkipped += data - pos;
                pos = data;
                if (pos >= end) break;
            }
            long hole = Seek(pos, SeekHole, end);
            if (hole <= pos) hole = end; // no holes known: read the rest
            _file.Position = pos;
            for (long at = pos; at < hole;)
            {
                int n = (int)Math.Min(1 << 24, hole - at);
                var chunk = new Span<byte>((byte*)address + (at - start), n);
                _file.ReadExactly(chunk);
                crc = Crc32C.Append(crc, chunk);
                at += n;
            }
            pos = hole;
        }
        if (Crc32C.Finish(crc) != section.Crc)
            throw new SnapshotException($"{_file.Name}: RAM section {section.Index} checksum mismatch (corrupted)");
    }

    private const int SeekData = 3, SeekHole = 4;

    /// <summary>lseek(SEEK_DATA / SEEK_HOLE) from <paramref name="pos"/>, clamped to <paramref name="end"/>. No data after
    /// pos (ENXIO) is end; a file system that cannot say (EINVAL) reports data at pos and its hole at end, so all is read.</summary>
    private long Seek(long pos, int whence, long end)
    {
        int fd = (int)_file.SafeFileHandle.DangerousGetHandle();
        long r = Tmds.Linux.LibC.lseek(fd, pos, whence);
        if (r < 0) return Tmds.Linux.LibC.errno == Tmds.Linux.LibC.ENXIO && whence == SeekData ? end : whence == SeekData ? pos : end;
        return Math.Min(r, end);
    }

    /// <summary>Makes [p, +length) of private anonymous memory zero: whole pages are dropped (they come back zero on first touch), the ragged ends cleared.</summary>
    private static unsafe void Zero(byte* p, long length)
    {
        const long Page = 4096;
        long head = Math.Min(length, (Page - (long)p % Page) % Page);
        new Span<byte>(p, (int)head).Clear();
        long whole = (length - head) / Page * Page;
        if (whole > 0 && Tmds.Linux.LibC.madvise(p + head, (Tmds.Linux.size_t)(ulong)whole, Tmds.Linux.LibC.MADV_DONTNEED) != 0)
            for (long done = 0; done < whole;)
            {
                int n = (int)Math.Min(1 << 30, whole - done);
                new Span<byte>(p + head + done, n).Clear();
                done += n;
            }
        long tail = length - head - whole;
        new Span<byte>(p + head + whole, (int)tail).Clear();
    }

    public void Dispose() => _file.Dispose();
}
