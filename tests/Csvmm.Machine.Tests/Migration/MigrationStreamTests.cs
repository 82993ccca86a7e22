using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Csvmm.Machine.Migration;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Tests.Migration;

/// <summary>The live-migration stream: what the source writes the destination reads back, and nothing else gets in.</summary>
public sealed unsafe class MigrationStreamTests : IDisposable
{
    private const int Page = MigrationFormat.PageSize;
    private const int RamPages = 16;
    private readonly byte* _ram = (byte*)NativeMemory.AllocZeroed(RamPages * Page);
    private static readonly MachineSpec Spec = new() { Firmware = "/x/bios.bin", MemoryBytes = 16 << 20 };

    public void Dispose() => NativeMemory.Free(_ram);

    private IReadOnlyList<(nint, ulong)> Target => [((nint)_ram, (ulong)(RamPages * Page))];

    /// <summary>A complete stream: spec, two page runs, a zero run over one of them, two state sections, END.</summary>
    private static byte[] GoodStream()
    {
        var ms = new MemoryStream();
        var w = new MigrationWriter(ms);
        w.WriteHeader();
        w.WriteSection(RecordKind.Spec, 0, Spec.Encode());
        var pages = new byte[3 * Page];
        for (int i = 0; i < pages.Length; i++) pages[i] = (byte)(i * 7 + 1);
        w.WritePages(0, 2 * Page, pages);
        w.WritePages(0, 10 * Page, pages.AsSpan(0, Page));
        w.WriteZero(0, 3 * Page, Page);
        w.WriteSection(RecordKind.Vcpu, 1, [1, 2, 3]);
        w.WriteSection(RecordKind.Clock, 0, [4, 5]);
        w.WriteEnd();
        return ms.ToArray();
    }

    private List<MigrationRecord> ReadAll(byte[] stream)
    {
        var r = new MigrationReader(new MemoryStream(stream), "test");
        r.ReadHeader();
        var records = new List<MigrationRecord> { r.Next() };
        r.RamTarget = Target;
        while (records[^1].Kind != RecordKind.End) records.Add(r.Next());
        return records;
    }

    [Fact]
    public void What_the_source_writes_the_destination_reads_back_with_the_pages_in_place()
    {
        var records = ReadAll(GoodStream());
        Assert.Equal([RecordKind.Spec, RecordKind.Pages, RecordKind.Pages, RecordKind.Zero, RecordKind.Vcpu, RecordKind.Clock, RecordKind.End],
            records.Select(r => r.Kind));
        Assert.Equal(Spec, MachineSpec.Decode(records[0].Payload!));
        Assert.Equal(1u, records[4].Index);
        Assert.Equal([1, 2, 3], records[4].Payload!);
        var ram = new ReadOnlySpan<byte>(_ram, RamPages * Page);
        Assert.Equal((byte)1, ram[2 * Page]);                      // first page of the run
        Assert.True(ram.Slice(3 * Page, Page).IndexOfAnyExcept((byte)0) < 0); // zeroed again by the ZERO record
        Assert.Equal((byte)((2 * Page * 7 + 1) & 0xFF), ram[4 * Page]);
        Assert.Equal((byte)1, ram[10 * Page]);
        Assert.True(ram[..(2 * Page)].IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void A_stream_cut_anywhere_is_refused_with_a_reason()
    {
        byte[] good = GoodStream();
        for (int cut = 0; cut < good.Length; cut++)
        {
            var e = Assert.Throws<SnapshotException>(() => ReadAll(good[..cut]));
            Assert.Contains("test:", e.Message);
        }
    }

    [Fact]
    public void A_stream_with_any_byte_flipped_is_refused()
    {
        byte[] good = GoodStream();
        for (int i = 0; i < good.Length; i++)
        {
            byte[] bad = (byte[])good.Clone();
            bad[i] ^= 0x40;
            Assert.Throws<SnapshotException>(() => ReadAll(bad));
        }
    }

    private static byte[] Record(uint kind, uint index, ulong length, ReadOnlySpan<byte> payload)
    {
        var ms = new MemoryStream();
        var w = new MigrationWriter(ms);
        w.WriteHeader();
        w.WriteSection(RecordKind.Spec, 0, Spec.Encode());
        var head = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(head, kind);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(4), index);
        BinaryPrimitives.WriteUInt64LittleEndian(head.AsSpan(8), length);
        ms.Write(head);
        ms.Write(payload);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(crc, Csvmm.Devices.State.Crc32C.Compute([.. head, .. payload]));
        ms.Write(crc);
        return ms.ToArray();
    }

    private static byte[] U64s(params ulong[] values)
    {
        var b = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(i * 8), values[i]);
        return b;
    }

    public static TheoryData<string, uint, uint, ulong, byte[], string> Hostile => new()
    {
        { "unknown kind", 0x58585858, 0, 0, [], "unknown record kind" },
        { "huge state section", (uint)RecordKind.Devices, 0, 1UL << 40, [], "too large" },
        { "PAGE of 2^63 bytes", (uint)RecordKind.Pages, 0, 1UL << 63, [], "PAGE record of" },
        { "PAGE of half a page", (uint)RecordKind.Pages, 0, 8 + 2048, new byte[8 + 2048], "PAGE record of" },
        { "PAGE past the region", (uint)RecordKind.Pages, 0, 8 + Page, [.. U64s(RamPages * Page), .. new byte[Page]], "outside RAM region" },
        { "PAGE at an offset that wraps", (uint)RecordKind.Pages, 0, 8 + Page, [.. U64s(ulong.MaxValue - 4095), .. new byte[Page]], "outside RAM region" },
        { "PAGE not page-aligned", (uint)RecordKind.Pages, 0, 8 + Page, [.. U64s(100), .. new byte[Page]], "outside RAM region" },
        { "PAGE in a region the machine lacks", (uint)RecordKind.Pages, 7, 8 + Page, [.. U64s(0), .. new byte[Page]], "RAM region 7" },
        { "ZERO over all of memory", (uint)RecordKind.Zero, 0, 16, U64s(0, ulong.MaxValue & ~4095UL), "outside RAM region" },
        { "ZERO of the wrong size", (uint)RecordKind.Zero, 0, 8, U64s(0), "ZERO record of" },
        { "END with a payload", (uint)RecordKind.End, 0, 1, [0], "END with a payload" },
        { "a second spec", (uint)RecordKind.Spec, 0, 3, [1, 2, 3], "a second spec" },
        { "a clock with an index", (uint)RecordKind.Clock, 4, 1, [0], "index 4" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void A_hostile_record_is_refused_and_names_the_problem(string what, uint kind, uint index, ulong length, byte[] payload, string fragment)
    {
        var e = Assert.Throws<SnapshotException>(() => ReadAll(Record(kind, index, length, payload)));
        Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"{what}: {e.Message}");
        Assert.True(new ReadOnlySpan<byte>(_ram, RamPages * Page).IndexOfAnyExcept((byte)0) < 0, $"{what}: RAM was written");
    }

    [Fact]
    public void Records_before_the_spec_and_wrong_headers_are_refused()
    {
        var ms = new MemoryStream();
        var w = new MigrationWriter(ms);
        w.WriteHeader();
        w.WriteEnd();
        Assert.Contains("before the machine's spec", Assert.Throws<SnapshotException>(() => ReadAll(ms.ToArray())).Message);
        byte[] good = GoodStream();
        byte[] version = (byte[])good.Clone();
        version[8] = 2;
        Assert.Contains("version 2", Assert.Throws<SnapshotException>(() => ReadAll(version)).Message);
        Assert.Contains("bad magic", Assert.Throws<SnapshotException>(() => ReadAll([.. "QEMU"u8, .. good[4..]])).Message);
    }

    [Fact]
    public void The_reply_says_whether_the_destination_took_the_VM()
    {
        var ms = new MemoryStream();
        MigrationReader.Reply(ms, null, MigrationFormat.ReplyReady);
        MigrationReader.Reply(ms, null);
        MigrationReader.Reply(ms, null);
        MigrationReader.Reply(ms, "SELinux denied { migrate_in }");
        MigrationReader.Reply(ms, new string('x', 10_000));
        ms.Position = 0;
        Assert.Null(MigrationWriter.ReadReply(ms, MigrationFormat.ReplyReady));
        Assert.Null(MigrationWriter.ReadReply(ms));
        Assert.Equal("the destination's reply came out of turn", MigrationWriter.ReadReply(ms, MigrationFormat.ReplyReady));
        Assert.Equal("the destination refused the VM: SELinux denied { migrate_in }", MigrationWriter.ReadReply(ms));
        Assert.Equal(MigrationFormat.MaxReplyMessage, MigrationWriter.ReadReply(ms)!.Length - "the destination refused the VM: ".Length);
        Assert.Contains("not a csvmm migration reply", MigrationWriter.ReadReply(new MemoryStream(new byte[8])));
    }

    [Theory]
    [InlineData("unix:/tmp/m.sock", "/tmp/m.sock", null)]
    [InlineData("tcp:127.0.0.1:4444", null, "127.0.0.1:4444")]
    [InlineData("tcp:localhost:5", null, "127.0.0.1:5")]
    [InlineData("tcp:[::1]:4444", null, "[::1]:4444")]
    public void Migration_uris_name_a_socket(string text, string? unix, string? tcp)
    {
        var uri = MigrationUri.TryParse(text, out string? problem);
        Assert.Null(problem);
        Assert.Equal(unix, uri!.UnixPath);
        Assert.Equal(tcp, uri.Tcp?.ToString());
    }

    [Theory]
    [InlineData("unix:", "not supported")]
    [InlineData("tcp:127.0.0.1", "expected tcp:HOST:PORT")]
    [InlineData("tcp:127.0.0.1:0", "expected tcp:HOST:PORT")]
    [InlineData("tcp:127.0.0.1:70000", "expected tcp:HOST:PORT")]
    [InlineData("tcp:127.0.0.1:-1", "expected tcp:HOST:PORT")]
    [InlineData("tcp:example.com:22", "IP address or localhost")]
    [InlineData("exec:cat > /tmp/x", "not supported")]
    [InlineData("unix:/tmp/a\0b", "NUL")]
    public void Other_uris_are_refused_with_a_reason(string text, string fragment)
    {
        Assert.Null(MigrationUri.TryParse(text, out string? problem));
        Assert.Contains(fragment, problem);
    }
}
