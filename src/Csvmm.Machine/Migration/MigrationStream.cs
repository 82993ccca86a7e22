using System.Buffers.Binary;
using Csvmm.Devices.State;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Migration;

/// <summary>What a record of the migration stream carries (the state kinds are the snapshot file's).</summary>
public enum RecordKind : uint
{
    Spec = SectionKind.Spec,
    Devices = SectionKind.Devices,
    Vcpu = SectionKind.Vcpu,
    Irqchip = SectionKind.Irqchip,
    Pit = SectionKind.Pit,
    Clock = SectionKind.Clock,
    /// <summary>Guest pages: index = RAM region; payload = u64 offset in the region, then whole 4 KiB pages.</summary>
    Pages = 0x45474150,  // "PAGE"
    /// <summary>Pages that are now all zero: index = RAM region; payload = u64 offset, u64 length (whole pages).</summary>
    Zero = 0x4F52455A,   // "ZERO"
    /// <summary>The last record: the source has stopped the VM, sent all its state and released its disks.</summary>
    End = 0x21444E45,    // "END!"
}

/// <summary>
/// csvmm's live-migration stream, version 1 (all integers little-endian):
/// <code>
/// header (16 bytes): "CSVMMMIG", u16 version = 1, u16 flags = 0, u32 CRC-32C of the 12 bytes before it
/// records:           u32 kind, u32 index, u64 payload length, payload, u32 CRC-32C of the 16-byte head and the payload
///                    SPEC first (exactly once); PAGE and ZERO any number of times, later ones overwriting earlier;
///                    DEVS, VCPU (one per vCPU), IRQC, PIT2, CCLK once each, as in a snapshot file; END last
/// replies (destination → source): u32 "CSRD" (after SPEC: the machine is built and allowed, send the rest),
///                    "CSOK" (after END: loaded, disks taken) or "CSNO" (refused, at any time), u32 length (≤ 4096), a
///                    UTF-8 message (the refusal's reason)
/// </code>
/// The source waits for CSRD before it copies anything, so the destination's set-up (building the machine, the MAC
/// decisions, opening the disks) is never part of the downtime.
/// The destination checks every record as it arrives (known kind, bounded length, pages inside a RAM region, CRC) and
/// refuses the stream as a whole on the first bad one; the machine it was filling never runs.
/// </summary>
public static class MigrationFormat
{
    public static ReadOnlySpan<byte> Magic => "CSVMMMIG"u8;
    public const ushort Version = 1;
    public const int HeaderLength = 16, RecordHeadLength = 16, PageSize = 4096;
    /// <summary>Pages in one PAGE record at most (1 MiB of data).</summary>
    public const int MaxPagesPerRecord = 256;
    public const uint ReplyOk = 0x4B4F5343, ReplyRefused = 0x4F4E5343, ReplyReady = 0x44525343; // "CSOK", "CSNO", "CSRD"
    public const int MaxReplyMessage = 4096;

    internal static bool Known(RecordKind k) => Enum.IsDefined(k);
}

/// <summary>Writes the source's side of a migration stream (see <see cref="MigrationFormat"/>). Not thread-safe.</summary>
public sealed class MigrationWriter(Stream stream)
{
    private readonly byte[] _head = new byte[MigrationFormat.RecordHeadLength + 16];
    private readonly byte[] _crc = new byte[4];

    /// <summary>Payload bytes written so far (heads and CRCs not counted).</summary>
    public long PayloadBytes { get; private set; }

    public void WriteHeader()
    {
        var h = new byte[MigrationFormat.HeaderLength];
        MigrationFormat.Magic.CopyTo(h);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), MigrationFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), Crc32C.Compute(h.AsSpan(0, 12)));
        stream.Write(h);
    }

    /// <summary>A state record (spec, devices, a vCPU, ...).</summary>
    public void WriteSection(RecordKind kind, uint index, ReadOnlySpan<byte> payload) => Write(kind, index, [], payload);

    private readonly byte[] _pages = GC.AllocateUninitializedArray<byte>(MigrationFormat.MaxPagesPerRecord * MigrationFormat.PageSize);

    /// <summary>
    /// Whole pages of RAM region <paramref name="region"/> starting at <paramref name="offset"/> (at most
    /// <see cref="MigrationFormat.MaxPagesPerRecord"/>). They are copied first: a running guest may be writing them, and
    /// the checksum must cover exactly the bytes sent (a later write is in the next round's dirty log).
    /// </summary>
    public void WritePages(uint region, ulong offset, ReadOnlySpan<byte> pages)
    {
        if (pages.Length > _pages.Length || pages.Length % MigrationFormat.PageSize != 0 || pages.IsEmpty)
            throw new ArgumentException($"{pages.Length} bytes is not 1 to {MigrationFormat.MaxPagesPerRecord} whole pages", nameof(pages));
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, offset);
        var copy = _pages.AsSpan(0, pages.Length);
        pages.CopyTo(copy);
        Write(RecordKind.Pages, region, prefix, copy);
    }

    /// <summary>Pages of region <paramref name="region"/> that are all zero now.</summary>
    public void WriteZero(uint region, ulong offset, ulong length)
    {
        Span<byte> payload = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, offset);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], length);
        Write(RecordKind.Zero, region, payload, []);
    }

    public void WriteEnd() => Write(RecordKind.End, 0, [], []);

    private void Write(RecordKind kind, uint index, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> payload)
    {
        var head = _head.AsSpan(0, MigrationFormat.RecordHeadLength + prefix.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)kind);
        BinaryPrimitives.WriteUInt32LittleEndian(head[4..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(head[8..], (ulong)(prefix.Length + payload.Length));
        prefix.CopyTo(head[MigrationFormat.RecordHeadLength..]);
        uint crc = Crc32C.Append(Crc32C.Append(Crc32C.Start, head), payload);
        stream.Write(head);
        stream.Write(payload);
        BinaryPrimitives.WriteUInt32LittleEndian(_crc, Crc32C.Finish(crc));
        stream.Write(_crc);
        PayloadBytes += prefix.Length + payload.Length;
    }

    /// <summary>Reads the destination's reply: null when it is <paramref name="expected"/> (OK: it accepted the VM; ready: send the rest), else why not.</summary>
    public static string? ReadReply(Stream stream, uint expected = MigrationFormat.ReplyOk)
    {
        var head = new byte[8];
        stream.ReadExactly(head);
        uint status = BinaryPrimitives.ReadUInt32LittleEndian(head);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(4));
        if (status is not (MigrationFormat.ReplyOk or MigrationFormat.ReplyRefused or MigrationFormat.ReplyReady) || length > MigrationFormat.MaxReplyMessage)
            return "the destination's reply is not a csvmm migration reply";
        var message = new byte[length];
        stream.ReadExactly(message);
        string text = System.Text.Encoding.UTF8.GetString(message);
        if (status == MigrationFormat.ReplyRefused) return $"the destination refused the VM: {text}";
        return status == expected ? null : "the destination's reply came out of turn";
    }
}

/// <summary>One record as <see cref="MigrationReader"/> hands it out (a PAGE record's data is already in guest RAM).</summary>
public readonly record struct MigrationRecord(RecordKind Kind, uint Index, byte[]? Payload, long Bytes);

/// <summary>
/// Reads and checks the destination's side of a migration stream. RAM arrives straight into the regions given by
/// <see cref="RamTarget"/>; everything else is returned as payloads.
/// </summary>
public sealed class MigrationReader(Stream stream, string source)
{
    private readonly byte[] _head = new byte[MigrationFormat.RecordHeadLength];
    private bool _ended, _specSeen;

    /// <summary>The writable RAM regions pages go to, by RAM region number (set once the machine exists).</summary>
    public IReadOnlyList<(nint Host, ulong Size)>? RamTarget { get; set; }

    private SnapshotException Bad(string what) => new($"{source}: not a usable csvmm migration stream: {what}");

    public void ReadHeader()
    {
        var h = new byte[MigrationFormat.HeaderLength];
        Fill(h, "the header");
        if (!h.AsSpan(0, 8).SequenceEqual(MigrationFormat.Magic)) throw Bad("bad magic");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(8));
        if (version != MigrationFormat.Version) throw Bad($"version {version}, this csvmm reads version {MigrationFormat.Version}");
        if (BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(12)) != Crc32C.Compute(h.AsSpan(0, 12))) throw Bad("header checksum mismatch");
        if (BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(10)) != 0) throw Bad("unknown flags");
    }

    /// <summary>The next record, checked (PAGE data is written into <see cref="RamTarget"/>).</summary>
    public unsafe MigrationRecord Next()
    {
        if (_ended) throw new InvalidOperationException("the stream has ended");
        Fill(_head, "a record");
        var kind = (RecordKind)BinaryPrimitives.ReadUInt32LittleEndian(_head);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(_head.AsSpan(4));
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(_head.AsSpan(8));
        if (!MigrationFormat.Known(kind)) throw Bad($"unknown record kind 0x{(uint)kind:x8}");
        if (!_specSeen && kind != RecordKind.Spec) throw Bad($"{kind} before the machine's spec");
        if (_specSeen && kind == RecordKind.Spec) throw Bad("a second spec");
        _specSeen = true;
        if (kind is not (RecordKind.Vcpu or RecordKind.Pages or RecordKind.Zero) && index != 0) throw Bad($"{kind} record with index {index}");
        uint crc = Crc32C.Append(Crc32C.Start, _head);
        byte[]? payload = null;
        switch (kind)
        {
            case RecordKind.End:
                if (length != 0) throw Bad("END with a payload");
                _ended = true;
                break;
            case RecordKind.Zero:
            {
                if (length != 16) throw Bad($"ZERO record of {length} bytes");
                payload = new byte[16];
                Fill(payload, "a ZERO record");
                crc = Crc32C.Append(crc, payload);
                var (host, size) = Region(index);
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                ulong bytes = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8));
                CheckRange(index, offset, bytes, size);
                Check(crc);
                for (ulong done = 0; done < bytes;)
                {
                    int n = (int)Math.Min(1 << 30, bytes - done);
                    new Span<byte>((byte*)host + offset + done, n).Clear();
                    done += (ulong)n;
                }
                return new MigrationRecord(kind, index, null, 0);
            }
            case RecordKind.Pages:
            {
                if (length < 8 + MigrationFormat.PageSize || length > 8 + (ulong)MigrationFormat.MaxPagesPerRecord * MigrationFormat.PageSize
                    || (length - 8) % MigrationFormat.PageSize != 0)
                    throw Bad($"PAGE record of {length} bytes");
                Span<byte> prefix = stackalloc byte[8];
                Fill(prefix, "a PAGE record");
                crc = Crc32C.Append(crc, prefix);
                var (host, size) = Region(index);
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
                ulong bytes = length - 8;
                CheckRange(index, offset, bytes, size);
                var target = new Span<byte>((byte*)host + offset, (int)bytes);
                Fill(target, "a PAGE record");
                crc = Crc32C.Append(crc, target);
                Check(crc);
                return new MigrationRecord(kind, index, null, (long)bytes);
            }
            default:
                if (length > SnapshotFormat.MaxSmallSection) throw Bad($"{kind} record of {length} bytes is too large");
                payload = new byte[length];
                Fill(payload, $"a {kind} record");
                crc = Crc32C.Append(crc, payload);
                break;
        }
        Check(crc);
        return new MigrationRecord(kind, index, payload, payload?.Length ?? 0);
    }

    private (nint Host, ulong Size) Region(uint index)
    {
        var target = RamTarget ?? throw Bad("RAM before the machine exists");
        if (index >= target.Count) throw Bad($"RAM region {index}, the machine has {target.Count}");
        return target[(int)index];
    }

    private void CheckRange(uint region, ulong offset, ulong bytes, ulong size)
    {
        if (offset % MigrationFormat.PageSize != 0 || bytes % MigrationFormat.PageSize != 0 || offset > size || bytes > size - offset)
            throw Bad($"pages [0x{offset:x}, +0x{bytes:x}) outside RAM region {region} (0x{size:x} bytes)");
    }

    private void Check(uint running)
    {
        Span<byte> c = stackalloc byte[4];
        Fill(c, "a record's checksum");
        if (BinaryPrimitives.ReadUInt32LittleEndian(c) != Crc32C.Finish(running)) throw Bad("record checksum mismatch (corrupted)");
    }

    private void Fill(Span<byte> into, string what)
    {
        try
        {
            stream.ReadExactly(into);
        }
        catch (EndOfStreamException)
        {
            throw Bad($"the stream ended inside {what} (the source went away)");
        }
        catch (IOException e)
        {
            throw new SnapshotException($"{source}: reading the migration stream: {e.Message}");
        }
    }

    /// <summary>Sends the destination's reply (see <see cref="MigrationFormat"/>): OK (or <paramref name="success"/>) when <paramref name="refusal"/> is null.</summary>
    public static void Reply(Stream stream, string? refusal, uint success = MigrationFormat.ReplyOk)
    {
        byte[] message = System.Text.Encoding.UTF8.GetBytes(refusal ?? "");
        if (message.Length > MigrationFormat.MaxReplyMessage) message = message[..MigrationFormat.MaxReplyMessage];
        var r = new byte[8 + message.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(r, refusal is null ? success : MigrationFormat.ReplyRefused);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(4), (uint)message.Length);
        message.CopyTo(r, 8);
        stream.Write(r);
        stream.Flush();
    }
}
