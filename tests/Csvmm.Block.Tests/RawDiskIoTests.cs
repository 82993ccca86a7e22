namespace Csvmm.Block.Tests;

/// <summary>Reads and writes through <see cref="RawDisk"/>: round trips, bounds, read-only, flush, counters.</summary>
public sealed class RawDiskIoTests : IDisposable
{
    private const int Size = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public RawDiskIoTests() => _image = _scratch.Image("disk.img", Size);

    public void Dispose() => _scratch.Dispose();

    public enum Memory { Managed, Native, NativeMisaligned }

    public static TheoryData<DiskCacheMode, Memory, ulong, int> RoundTrips()
    {
        var data = new TheoryData<DiskCacheMode, Memory, ulong, int>();
        (ulong Offset, int Length)[] ranges =
        [
            (0, 512), (512, 4096), (12288, 65536), (1, 1), (4095, 1000), (Size - 512, 512), (Size - 1, 1), (7, 300_001), (0, Size),
        ];
        foreach (DiskCacheMode cache in Enum.GetValues<DiskCacheMode>())
            foreach (Memory memory in Enum.GetValues<Memory>())
                foreach ((ulong offset, int length) in ranges)
                    data.Add(cache, memory, offset, length);
        return data;
    }

    [Theory]
    [MemberData(nameof(RoundTrips))]
    public void WriteThenReadRoundTripsAndLandsInTheFile(DiskCacheMode cache, Memory memory, ulong offset, int length)
    {
        byte[] payload = Scratch.Pattern(1_000_003 + (long)offset, length); // differs from the file's pattern
        using (RawDisk disk = DiskOpener.Open(_image, cache: cache))
        {
            WithBuffer(memory, length, buffer =>
            {
                payload.CopyTo(buffer);
                Assert.Equal(DiskIoResult.Ok, disk.Write(offset, buffer));
            });
            WithBuffer(memory, length, buffer =>
            {
                buffer.Fill(0xEE);
                Assert.Equal(DiskIoResult.Ok, disk.Read(offset, buffer));
                Assert.True(buffer.SequenceEqual(payload));
            });
            Assert.Equal(1, disk.Counters.Writes);
            Assert.Equal(1, disk.Counters.Reads);
            Assert.Equal(length, disk.Counters.BytesWritten);
            Assert.Equal(length, disk.Counters.BytesRead);
            Assert.Equal(0, disk.Counters.Errors);
        }

        byte[] file = File.ReadAllBytes(_image);
        Assert.Equal(Size, file.Length);
        Assert.True(file.AsSpan((int)offset, length).SequenceEqual(payload));
        // Everything around the written range is untouched.
        Assert.True(file.AsSpan(0, (int)offset).SequenceEqual(Scratch.Pattern(0, (int)offset)));
        int after = (int)offset + length;
        Assert.True(file.AsSpan(after).SequenceEqual(Scratch.Pattern(after, Size - after)));
    }

    [Theory]
    [InlineData(0UL, 512)]
    [InlineData(513UL, 77)]
    [InlineData((ulong)Size - 4096, 4096)]
    public void ReadsTheImageAsItIs(ulong offset, int length)
    {
        using RawDisk disk = DiskOpener.Open(_image, readOnly: true);
        var buffer = new byte[length];
        Assert.Equal(DiskIoResult.Ok, disk.Read(offset, buffer));
        Assert.Equal(Scratch.Pattern((long)offset, length), buffer);
    }

    [Fact]
    public void SectorHelpersAddressInSectors()
    {
        using RawDisk disk = DiskOpener.Open(_image);
        Assert.Equal((ulong)Size / 512, disk.SectorCount());
        var sector = new byte[512];
        Assert.Equal(DiskIoResult.Ok, disk.ReadSectors(3, sector));
        Assert.Equal(Scratch.Pattern(3 * 512, 512), sector);
        Assert.Equal(DiskIoResult.Ok, disk.WriteSectors(5, new byte[512]));
        Assert.Equal(new byte[512], File.ReadAllBytes(_image).AsSpan(5 * 512, 512).ToArray());
        // A sector number whose byte offset overflows 64 bits is out of range, not wrapped around to sector 0.
        Assert.Equal(DiskIoResult.OutOfRange, disk.ReadSectors(ulong.MaxValue / 512 + 1, sector));
        Assert.Equal(DiskIoResult.OutOfRange, disk.WriteSectors(ulong.MaxValue / 256, sector));
        Assert.Equal(DiskIoResult.OutOfRange, disk.ReadSectors((ulong)Size / 512, sector));
    }

    public static TheoryData<ulong, int> OutOfRangeRequests() => new()
    {
        { Size - 511, 512 },                 // straddles the end
        { Size, 1 },                         // starts at the end
        { Size + 1, 0 },                     // empty, but past the end
        { ulong.MaxValue - 100, 512 },       // offset + length wraps
        { ulong.MaxValue, 1 },
        { (ulong)long.MaxValue + 1, 512 },   // would be a negative off_t
    };

    [Theory]
    [MemberData(nameof(OutOfRangeRequests))]
    public void RequestsOutsideTheDiskAreRefusedWithoutTouchingTheFile(ulong offset, int length)
    {
        DateTime mtime = File.GetLastWriteTimeUtc(_image);
        using (RawDisk disk = DiskOpener.Open(_image, cache: DiskCacheMode.None))
        {
            var buffer = new byte[length];
            Array.Fill(buffer, (byte)0xEE);
            Assert.Equal(DiskIoResult.OutOfRange, disk.Read(offset, buffer));
            Assert.All(buffer, b => Assert.Equal(0xEE, b));
            Assert.Equal(DiskIoResult.OutOfRange, disk.Write(offset, buffer));
            Assert.Equal(DiskIoResult.OutOfRange, disk.Discard(offset, (ulong)length));
            Assert.Equal(DiskIoResult.OutOfRange, disk.WriteZeroes(offset, (ulong)length, unmap: false));
            Assert.Equal(DiskIoResult.OutOfRange, disk.WriteZeroes(offset, (ulong)length, unmap: true));
            Assert.Equal(5, disk.Counters.Errors);
            Assert.Equal(0, disk.Counters.Reads + disk.Counters.Writes + disk.Counters.Discards + disk.Counters.WriteZeroes);
        }
        Assert.Equal(Scratch.Pattern(0, Size), File.ReadAllBytes(_image)); // same content, same length
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(_image));
    }

    [Fact]
    public void LengthsThatWrapAreRefused()
    {
        using RawDisk disk = DiskOpener.Open(_image);
        Assert.Equal(DiskIoResult.OutOfRange, disk.Discard(512, ulong.MaxValue));
        Assert.Equal(DiskIoResult.OutOfRange, disk.WriteZeroes(512, ulong.MaxValue - 511, unmap: false));
        Assert.Equal(DiskIoResult.OutOfRange, disk.Discard(0, Size + 1UL));
        Assert.Equal(Scratch.Pattern(0, Size), File.ReadAllBytes(_image));
    }

    [Fact]
    public void EmptyRequestsInsideTheDiskSucceed()
    {
        using RawDisk disk = DiskOpener.Open(_image);
        Assert.Equal(DiskIoResult.Ok, disk.Read(Size, Span<byte>.Empty));
        Assert.Equal(DiskIoResult.Ok, disk.Write(0, ReadOnlySpan<byte>.Empty));
        Assert.Equal(DiskIoResult.Ok, disk.Discard(Size, 0));
        Assert.Equal(DiskIoResult.Ok, disk.WriteZeroes(4096, 0, unmap: true));
        Assert.Equal(0, disk.Counters.Errors);
    }

    [Fact]
    public void ReadOnlyDiskRefusesEveryChangeAndLeavesTheFileAlone()
    {
        DateTime mtime = File.GetLastWriteTimeUtc(_image);
        using (RawDisk disk = DiskOpener.Open(_image, readOnly: true))
        {
            Assert.True(disk.ReadOnly);
            Assert.Equal(DiskLockMode.Shared, disk.LockMode);
            Assert.Contains("read-only", disk.Describe);
            Assert.Equal(DiskIoResult.ReadOnlyDisk, disk.Write(0, new byte[512]));
            Assert.Equal(DiskIoResult.ReadOnlyDisk, disk.Discard(0, 512));
            Assert.Equal(DiskIoResult.ReadOnlyDisk, disk.WriteZeroes(0, 512, unmap: false));
            Assert.Equal(DiskIoStatus.ReadOnly, disk.WriteZeroesByWriting(0, 512).Status);
            Assert.Equal(3, disk.Counters.Errors);

            var sector = new byte[512];
            Assert.Equal(DiskIoResult.Ok, disk.Read(0, sector));
            Assert.Equal(Scratch.Pattern(0, 512), sector);
            Assert.Equal(DiskIoResult.Ok, disk.Flush());
        }
        Assert.Equal(Scratch.Pattern(0, Size), File.ReadAllBytes(_image));
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(_image));
    }

    [Theory]
    [InlineData(DiskCacheMode.Writeback)]
    [InlineData(DiskCacheMode.None)]
    public void FlushSucceedsAndIsCounted(DiskCacheMode cache)
    {
        using RawDisk disk = DiskOpener.Open(_image, cache: cache);
        Assert.Equal(DiskIoResult.Ok, disk.Write(4096, new byte[4096]));
        Assert.Equal(DiskIoResult.Ok, disk.Flush());
        Assert.Equal(DiskIoResult.Ok, disk.Flush());
        Assert.Equal(2, disk.Counters.Flushes);
        Assert.Equal(0, disk.Counters.Errors);
    }

    [Fact]
    public void AnImageThatShrankUnderTheDiskReadsAsEndOfFileNotGarbage()
    {
        using RawDisk disk = DiskOpener.Open(_image);
        using (var fs = new FileStream(_image, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            fs.SetLength(Size / 2);
        var buffer = new byte[4096];
        DiskIoResult r = disk.Read(Size - 4096, buffer);
        Assert.Equal(DiskIoStatus.EndOfFile, r.Status);
        Assert.False(r.IsOk);
        Assert.Equal(1, disk.Counters.Errors);
    }

    [Fact]
    public void RequestsAfterDisposeFailQuietly()
    {
        RawDisk disk = DiskOpener.Open(_image, cache: DiskCacheMode.None);
        disk.Dispose();
        disk.Dispose(); // idempotent
        var buffer = new byte[512];
        Assert.Equal(DiskIoResult.Closed, disk.Read(0, buffer));
        Assert.Equal(DiskIoResult.Closed, disk.Write(0, buffer));
        Assert.Equal(DiskIoResult.Closed, disk.Flush());
        Assert.Equal(DiskIoResult.Closed, disk.Discard(0, 512));
        Assert.Equal(DiskIoResult.Closed, disk.WriteZeroes(0, 512, unmap: false));
    }

    [Fact]
    public void DescribeNamesPathSizeModeAndLock()
    {
        using RawDisk disk = DiskOpener.Open(_image);
        Assert.Equal(_image, disk.Path);
        Assert.Equal(DiskFileKind.RegularFile, disk.Kind);
        Assert.Equal((ulong)Size, disk.SizeBytes);
        Assert.Equal(512, disk.LogicalBlockSize);
        Assert.Equal($"{_image} (raw image, {Size} bytes, read-write, cache=writeback, exclusive lock)", disk.Describe);
    }

    [Fact]
    public void ResultsSayWhatWentWrong()
    {
        Assert.True(DiskIoResult.Ok.IsOk);
        Assert.Equal("ok", DiskIoResult.Ok.ToString());
        DiskIoResult enospc = DiskIoResult.Host(28);
        Assert.Equal(DiskIoStatus.HostError, enospc.Status);
        Assert.Equal(28, enospc.Errno);
        Assert.Equal("No space left on device (errno 28)", enospc.ToString());
        Assert.Equal(5, DiskIoResult.Host(0).Errno);   // a failed call without an errno is still an error
        Assert.NotEqual(DiskIoResult.Host(5), DiskIoResult.Host(28));
        Assert.Equal("request past the end of the disk", DiskIoResult.OutOfRange.ToString());
    }

    private static unsafe void WithBuffer(Memory memory, int length, SpanAction action)
    {
        if (memory == Memory.Managed)
        {
            action(new byte[length]);
            return;
        }
        using var native = new NativeBuffer(length, memory == Memory.NativeMisaligned ? 8 : 0);
        action(native.Span);
    }

    private delegate void SpanAction(Span<byte> buffer);
}
