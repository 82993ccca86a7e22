using System.Buffers.Binary;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Tests;

/// <summary>The snapshot file format: round trip, and every kind of hostile or damaged file refused as a whole.</summary>
public sealed class SnapshotFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-snap-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly byte[] Spec = new MachineSpec { Firmware = "/fw.bin", MemoryBytes = 64UL << 20, Cpus = 2 }.Encode();
    private static readonly byte[] Devices = Enumerable.Range(0, 300).Select(i => (byte)i).ToArray();
    private static readonly byte[] Cpu0 = Enumerable.Repeat((byte)0xC0, 5000).ToArray();
    private static readonly byte[] Cpu1 = Enumerable.Repeat((byte)0xC1, 5000).ToArray();
    private static readonly byte[] Ram = Enumerable.Range(0, 3 * 4096 + 100).Select(i => (byte)(i * 7)).ToArray();

    private string Write(string name = "vm.snap")
    {
        string path = Path.Combine(_dir, name);
        using var w = new SnapshotWriter(path);
        w.Add(SectionKind.Spec, 0, Spec);
        w.Add(SectionKind.Devices, 0, Devices);
        w.Add(SectionKind.Vcpu, 0, Cpu0);
        w.Add(SectionKind.Vcpu, 1, Cpu1);
        w.Add(SectionKind.Ram, 0, Ram);
        w.Finish();
        return path;
    }

    [Fact]
    public void Round_trip_keeps_every_section_and_aligns_ram_to_a_page()
    {
        string path = Write();
        Assert.False(File.Exists(path + ".tmp"));
        Assert.Equal(0, new FileInfo(path).Length % SnapshotFormat.PageAlignment); // whole sectors, as the disk gate wants
        using var r = SnapshotReader.Open(path);
        Assert.Equal([SectionKind.Spec, SectionKind.Devices, SectionKind.Vcpu, SectionKind.Vcpu, SectionKind.Ram], r.Sections.Select(s => s.Kind));
        Assert.Equal(new MachineSpec { Firmware = "/fw.bin", MemoryBytes = 64UL << 20, Cpus = 2 }, MachineSpec.Decode(r.Read(r.Find(SectionKind.Spec)!.Value)));
        Assert.Equal(Devices, r.Read(r.Find(SectionKind.Devices)!.Value));
        Assert.Equal(Cpu1, r.Read(r.Find(SectionKind.Vcpu, 1)!.Value));
        var ram = r.Find(SectionKind.Ram)!.Value;
        Assert.Equal(0, ram.Offset % SnapshotFormat.PageAlignment);
        var back = new byte[Ram.Length];
        r.ReadRam(ram, back);
        Assert.Equal(Ram, back);
        r.VerifyRam(ram);
        Assert.Null(r.Find(SectionKind.Pit));
    }

    private void AssertRefused(byte[] bytes, string? fragment = null)
    {
        string path = Path.Combine(_dir, "bad.snap");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<SnapshotException>(() =>
        {
            using var r = SnapshotReader.Open(path);
            // A file whose header and table pass must still fail when its sections are read.
            foreach (var s in r.Sections)
            {
                if (s.Kind == SectionKind.Ram) r.VerifyRam(s);
                else r.Read(s);
            }
        });
        Assert.StartsWith(path, e.Message);
        if (fragment is not null) Assert.Contains(fragment, e.Message);
    }

    private static unsafe long AllocatedBytes(string path)
    {
        Tmds.Linux.stat st;
        var name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name) Assert.Equal(0, Tmds.Linux.LibC.stat(p, &st));
        return (long)st.st_blocks * 512;
    }

    [Fact]
    public unsafe void Zero_ram_becomes_holes_that_cost_no_blocks_and_read_back_as_zeros_and_a_damaged_hole_is_caught()
    {
        // 8 MiB of "RAM": a written page at 1 MiB and at the very end, the rest zero.
        const long Size = 8 << 20;
        byte* ram = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)Size);
        byte* back = (byte*)Tmds.Linux.LibC.mmap(null, (Tmds.Linux.size_t)(ulong)Size, Tmds.Linux.LibC.PROT_READ | Tmds.Linux.LibC.PROT_WRITE,
            Tmds.Linux.LibC.MAP_PRIVATE | Tmds.Linux.LibC.MAP_ANONYMOUS, -1, 0);
        try
        {
            new Span<byte>(ram + (1 << 20), 4096).Fill(0xAB);
            new Span<byte>(ram + Size - 100, 100).Fill(0xCD);
            string path = Path.Combine(_dir, "sparse.snap");
            long holes;
            using (var w = new SnapshotWriter(path))
            {
                w.Add(SectionKind.Spec, 0, Spec);
                w.AddRam(0, (nint)ram, Size);
                holes = w.HoleBytes;
                w.Finish();
            }
            Assert.Equal(Size - 2 * SnapshotWriter.HoleGranularity, holes);
            long allocated = AllocatedBytes(path);
            Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated for a file of {Size} mostly zero bytes");

            // Restore into memory that is not zero (as a machine whose firmware was loaded would be): holes come back zero.
            new Span<byte>(back, (int)Size).Fill(0x55);
            using (var r = SnapshotReader.Open(path))
            {
                r.ReadRamInto(r.Find(SectionKind.Ram)!.Value, (nint)back, Size);
                Assert.True(r.HoleBytesSkipped >= Size - 2 * SnapshotWriter.HoleGranularity, $"{r.HoleBytesSkipped} hole bytes skipped");
            }
            Assert.True(new ReadOnlySpan<byte>(ram, (int)Size).SequenceEqual(new ReadOnlySpan<byte>(back, (int)Size)));

            // A byte written into a hole is data the CRC did not cover: refused.
            using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                using var r = SnapshotReader.Open(path);
                f.Position = r.Find(SectionKind.Ram)!.Value.Offset + (3 << 20);
                f.WriteByte(1);
            }
            using (var r = SnapshotReader.Open(path))
                Assert.Contains("checksum mismatch", Assert.Throws<SnapshotException>(() => r.ReadRamInto(r.Find(SectionKind.Ram)!.Value, (nint)back, Size)).Message);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(ram);
            Tmds.Linux.LibC.munmap(back, (Tmds.Linux.size_t)(ulong)Size);
        }
    }

    [Fact]
    public void Truncated_at_every_section_boundary_and_everywhere_in_the_header_is_refused()
    {
        var good = File.ReadAllBytes(Write());
        using var r = SnapshotReader.Open(Path.Combine(_dir, "vm.snap"));
        var cuts = new SortedSet<long> { 0, 1, 8, 39, 40, 41 };
        foreach (var s in r.Sections) { cuts.Add(s.Offset); cuts.Add(s.Offset + 1); cuts.Add(s.Offset + s.Length); cuts.Add(s.Offset + s.Length - 1); }
        cuts.Add(good.Length - 1);
        cuts.Add(good.Length - 32);
        foreach (long cut in cuts.Where(c => c < good.Length))
            AssertRefused(good[..(int)cut]);
        AssertRefused([.. good, 0], "truncated or extended");
    }

    [Fact]
    public void A_flipped_bit_anywhere_is_refused()
    {
        var good = File.ReadAllBytes(Write());
        var rng = new Random(7);
        var positions = Enumerable.Range(0, 64).Select(_ => rng.Next(good.Length)).Concat(Enumerable.Range(0, 40)).Concat(
            Enumerable.Range(good.Length - 5 * 32, 5 * 32)).Distinct();
        foreach (int at in positions)
        {
            var bad = (byte[])good.Clone();
            bad[at] ^= (byte)(1 << rng.Next(8));
            // Padding between sections is covered by no checksum: a flip there is harmless and must still load.
            if (IsPadding(good, at)) continue;
            AssertRefused(bad);
        }
    }

    private bool IsPadding(byte[] good, int at)
    {
        using var r = SnapshotReader.Open(Path.Combine(_dir, "vm.snap"));
        if (at < SnapshotFormat.HeaderLength) return false;
        long tableOffset = BinaryPrimitives.ReadInt64LittleEndian(good.AsSpan(24));
        if (at >= tableOffset) return false;
        return !r.Sections.Any(s => at >= s.Offset && at < s.Offset + s.Length);
    }

    /// <summary>Rewrites one table entry and re-seals both checksums, as a hostile writer would.</summary>
    private byte[] Forge(Action<Span<byte>> editTable, Action<Span<byte>>? editHeader = null)
    {
        var bytes = File.ReadAllBytes(Write());
        long tableOffset = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(24));
        var table = bytes.AsSpan((int)tableOffset);
        editTable(table);
        editHeader?.Invoke(bytes.AsSpan(0, SnapshotFormat.HeaderLength));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(32), SnapshotFormat.Crc(table));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(36), SnapshotFormat.Crc(bytes.AsSpan(0, 36)));
        return bytes;
    }

    [Fact]
    public void Forged_tables_with_valid_checksums_are_refused()
    {
        AssertRefused(Forge(t => BinaryPrimitives.WriteInt64LittleEndian(t[(2 * 32 + 16)..], long.MaxValue)), "outside its room");
        AssertRefused(Forge(t => BinaryPrimitives.WriteInt64LittleEndian(t[(2 * 32 + 16)..], -1)), "outside its room");
        AssertRefused(Forge(t => BinaryPrimitives.WriteInt64LittleEndian(t[(3 * 32 + 8)..], 48)), "overlaps");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t[(3 * 32 + 4)..], 0)), "two Vcpu sections");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t[(1 * 32)..], 0x58585858)), "unknown kind");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t, (uint)SectionKind.Pit)), "no machine spec");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t, (uint)SectionKind.Devices)), "two Devices sections");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t[(1 * 32 + 4)..], 3)), "index 3");
        AssertRefused(Forge(t => BinaryPrimitives.WriteUInt32LittleEndian(t[(4 * 32 + 28)..], 1)), "reserved");
        AssertRefused(Forge(t => BinaryPrimitives.WriteInt64LittleEndian(t[(4 * 32 + 8)..], BinaryPrimitives.ReadInt64LittleEndian(t[(4 * 32 + 8)..]) - 8)), "page-aligned");
        AssertRefused(Forge(_ => { }, h => BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 100_000)), "sections");
        AssertRefused(Forge(_ => { }, h => BinaryPrimitives.WriteUInt16LittleEndian(h[8..], 2)), "version 2");
        AssertRefused(Forge(_ => { }, h => BinaryPrimitives.WriteUInt16LittleEndian(h[10..], 1)), "flags");
        AssertRefused(Forge(_ => { }, h => BinaryPrimitives.WriteInt64LittleEndian(h[24..], 8)), "table");
    }

    [Fact]
    public void Not_a_snapshot_at_all_is_one_clear_error()
    {
        AssertRefused([], "shorter than the header");
        AssertRefused(new byte[4096], "bad magic");
        var e = Assert.Throws<SnapshotException>(() => SnapshotReader.Open(Path.Combine(_dir, "missing.snap")));
        Assert.Contains("missing.snap", e.Message);
    }

    [Fact]
    public void An_unfinished_writer_leaves_nothing_behind_and_an_old_snapshot_intact()
    {
        string path = Write();
        var before = File.ReadAllBytes(path);
        using (var w = new SnapshotWriter(path))
            w.Add(SectionKind.Spec, 0, Spec); // disposed without Finish: a crash or error mid-save
        Assert.False(File.Exists(path + ".tmp"));
        Assert.Equal(before, File.ReadAllBytes(path));
    }
}
