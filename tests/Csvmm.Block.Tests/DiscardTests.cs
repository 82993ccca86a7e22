namespace Csvmm.Block.Tests;

/// <summary>Discard and write-zeroes: what the range reads back, that nothing around it moves, and the zero-write fallback.</summary>
public sealed class DiscardTests : IDisposable
{
    private const int Size = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public DiscardTests() => _image = _scratch.Image("trim.img", Size);

    public void Dispose() => _scratch.Dispose();

    public static TheoryData<DiskCacheMode, ulong, ulong> Ranges()
    {
        var data = new TheoryData<DiskCacheMode, ulong, ulong>();
        foreach (DiskCacheMode cache in Enum.GetValues<DiskCacheMode>())
        {
            data.Add(cache, 4096, 8192 + 512);      // block aligned start, sector aligned end
            data.Add(cache, 100, 1000);             // inside one block
            data.Add(cache, 0, Size);               // the whole disk
            data.Add(cache, Size - 512, 512);       // the last sector
            data.Add(cache, 3, 200_003);            // several 64 KiB zero chunks, odd at both ends
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Ranges))]
    public void WriteZeroesReadsBackAsZeroes(DiskCacheMode cache, ulong offset, ulong length)
    {
        foreach (bool unmap in new[] { false, true })
        {
            using (RawDisk disk = DiskOpener.Open(_image, cache: cache))
            {
                Assert.Equal(DiskIoResult.Ok, disk.WriteZeroes(offset, length, unmap));
                Assert.Equal(1, disk.Counters.WriteZeroes);
                AssertZeroedThroughDisk(disk, offset, length);
            }
            AssertFileZeroedOnly(offset, length);
            File.WriteAllBytes(_image, Scratch.Pattern(0, Size));
        }
    }

    [Theory]
    [MemberData(nameof(Ranges))]
    public void TheZeroWriteFallbackWritesZeroes(DiskCacheMode cache, ulong offset, ulong length)
    {
        using (RawDisk disk = DiskOpener.Open(_image, cache: cache))
        {
            Assert.Equal(DiskIoResult.Ok, disk.WriteZeroesByWriting(offset, length));
            AssertZeroedThroughDisk(disk, offset, length);
        }
        AssertFileZeroedOnly(offset, length);
    }

    [Theory]
    [MemberData(nameof(Ranges))]
    public void DiscardPunchesAHoleThatReadsAsZeroesOnThisFileSystem(DiskCacheMode cache, ulong offset, ulong length)
    {
        // Discard only promises "no longer needed"; on ext4/xfs/btrfs/tmpfs a punched hole reads back as zeroes.
        using (RawDisk disk = DiskOpener.Open(_image, cache: cache))
        {
            Assert.Equal(DiskIoResult.Ok, disk.Discard(offset, length));
            Assert.Equal(1, disk.Counters.Discards);
        }
        AssertFileZeroedOnly(offset, length);
    }

    [Fact]
    public void PunchedHolesFreeSpace()
    {
        using (RawDisk disk = DiskOpener.Open(_image))
            Assert.Equal(DiskIoResult.Ok, disk.Flush());
        long before = AllocatedBytes(_image);
        using (RawDisk disk = DiskOpener.Open(_image))
            Assert.Equal(DiskIoResult.Ok, disk.Discard(0, Size / 2));
        Assert.True(AllocatedBytes(_image) <= before - Size / 2, $"allocated {before} before, {AllocatedBytes(_image)} after");
        Assert.Equal(Size, new FileInfo(_image).Length); // KEEP_SIZE
    }

    private static void AssertZeroedThroughDisk(RawDisk disk, ulong offset, ulong length)
    {
        var back = new byte[length];
        Array.Fill(back, (byte)0xEE);
        Assert.Equal(DiskIoResult.Ok, disk.Read(offset, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0, "the disk does not read the range back as zeroes");
    }

    private void AssertFileZeroedOnly(ulong offset, ulong length)
    {
        byte[] file = File.ReadAllBytes(_image);
        Assert.Equal(Size, file.Length);
        int start = (int)offset, end = (int)(offset + length);
        Assert.True(file.AsSpan(start, end - start).IndexOfAnyExcept((byte)0) < 0, "the range is not all zeroes");
        Assert.True(file.AsSpan(0, start).SequenceEqual(Scratch.Pattern(0, start)), "bytes before the range changed");
        Assert.True(file.AsSpan(end).SequenceEqual(Scratch.Pattern(end, Size - end)), "bytes after the range changed");
    }

    /// <summary>Bytes the file occupies on disk (st_blocks × 512).</summary>
    private static long AllocatedBytes(string path)
    {
        Assert.Equal(0, DiskSyscalls.StatPath(path, out StatX st));
        return (long)st.Blocks * 512;
    }
}
