namespace Csvmm.Block.Tests;

/// <summary>ReadVectored/WriteVectored: one preadv/pwritev over several buffers, the checks before it, the O_DIRECT fallback.</summary>
public sealed unsafe class VectoredIoTests : IDisposable
{
    private const int Size = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public VectoredIoTests() => _image = _scratch.Image("vec.img", Size);

    public void Dispose() => _scratch.Dispose();

    private static IoVector[] Vectors(NativeBuffer buffer, params int[] lengths)
    {
        var v = new IoVector[lengths.Length];
        int at = 0;
        for (int i = 0; i < lengths.Length; i++)
        {
            v[i] = IoVector.FromPinned(buffer.Span.Slice(at, lengths[i]));
            at += lengths[i];
        }
        return v;
    }

    [Fact]
    public void ScatterReadFillsEachBufferFromConsecutiveBytes()
    {
        using var disk = DiskOpener.Open(_image);
        using var buf = new NativeBuffer(16384);
        // Odd sizes and an empty buffer in the middle: buffers need not be sector sized.
        var v = Vectors(buf, 512, 1000, 0, 4096, 3);
        Assert.Equal(DiskIoResult.Ok, disk.ReadVectored(4096, v));
        Assert.True(buf.Span[..5611].SequenceEqual(Scratch.Pattern(4096, 5611)));
        Assert.Equal(0, buf.Span[5611]);
        Assert.Equal(1, disk.Counters.Reads);
        Assert.Equal(5611, disk.Counters.BytesRead);
    }

    [Fact]
    public void GatherWriteLandsContiguouslyAndNothingElseMoves()
    {
        using (var disk = DiskOpener.Open(_image))
        using (var buf = new NativeBuffer(8192))
        {
            Scratch.Pattern(999, 8192).CopyTo(buf.Span);
            Assert.Equal(DiskIoResult.Ok, disk.WriteVectored(512 * 3, Vectors(buf, 512, 2048, 512, 5120)));
            Assert.Equal(1, disk.Counters.Writes);
            Assert.Equal(8192, disk.Counters.BytesWritten);
        }
        byte[] expected = Scratch.Pattern(0, Size);
        Scratch.Pattern(999, 8192).CopyTo(expected, 512 * 3);
        Assert.Equal(expected, File.ReadAllBytes(_image));
    }

    [Fact]
    public void MoreBuffersThanIovMaxAreSplitAcrossCalls()
    {
        const int n = DiskSyscalls.IovMax * 2 + 17;
        using var disk = DiskOpener.Open(_image);
        using var buf = new NativeBuffer(n * 256);
        var lengths = Enumerable.Repeat(256, n).ToArray();
        Assert.Equal(DiskIoResult.Ok, disk.ReadVectored(777, Vectors(buf, lengths)));
        Assert.True(buf.Span.SequenceEqual(Scratch.Pattern(777, n * 256)));

        Scratch.Pattern(31, n * 256).CopyTo(buf.Span);
        Assert.Equal(DiskIoResult.Ok, disk.WriteVectored(1024, Vectors(buf, lengths)));
        var back = new byte[n * 256];
        Assert.Equal(DiskIoResult.Ok, disk.Read(1024, back));
        Assert.Equal(Scratch.Pattern(31, n * 256), back);
    }

    [Theory]
    [InlineData((ulong)Size - 1000, 1024)]  // runs off the end
    [InlineData((ulong)Size + 512, 512)]    // starts past the end
    [InlineData(ulong.MaxValue - 100, 512)] // offset + length wraps
    public void OutOfRangeIsRefusedBeforeAnyAccess(ulong offset, int length)
    {
        using (var disk = DiskOpener.Open(_image))
        using (var buf = new NativeBuffer(2048))
        {
            buf.Span.Fill(0xEE);
            var v = Vectors(buf, length / 2, length - length / 2);
            Assert.Equal(DiskIoStatus.OutOfRange, disk.WriteVectored(offset, v).Status);
            Assert.Equal(DiskIoStatus.OutOfRange, disk.ReadVectored(offset, v).Status);
            Assert.Equal(2, disk.Counters.Errors);
            Assert.True(buf.Span.IndexOfAnyExcept((byte)0xEE) < 0);
        }
        Assert.Equal(Scratch.Pattern(0, Size), File.ReadAllBytes(_image));
    }

    [Fact]
    public void ReadOnlyDiskRefusesGatherWrites()
    {
        using (var disk = DiskOpener.Open(_image, readOnly: true))
        using (var buf = new NativeBuffer(1024))
        {
            Assert.Equal(DiskIoStatus.ReadOnly, disk.WriteVectored(0, Vectors(buf, 512, 512)).Status);
            Assert.Equal(DiskIoResult.Ok, disk.ReadVectored(0, Vectors(buf, 512, 512)));
        }
        Assert.Equal(Scratch.Pattern(0, Size), File.ReadAllBytes(_image));
    }

    [Fact]
    public void ShortReadAtAShrunkenEndIsContinuedThenReportedAsEndOfFile()
    {
        using var disk = DiskOpener.Open(_image);
        // The image shrinks under the VM: preadv returns short inside the second buffer.
        using (var fs = new FileStream(_image, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            fs.SetLength(Size - 700);
        using var buf = new NativeBuffer(2048);
        var r = disk.ReadVectored(Size - 2048, Vectors(buf, 1024, 1024));
        Assert.Equal(DiskIoStatus.EndOfFile, r.Status);
        Assert.True(buf.Span[..(2048 - 700)].SequenceEqual(Scratch.Pattern(Size - 2048, 2048 - 700)));
        Assert.Equal(1, disk.Counters.Errors);
    }

    [Fact]
    public void DefaultInterfaceImplementationLoopsOverTheBuffers()
    {
        using var inner = DiskOpener.Open(_image);
        IDiskBackend plain = new PlainDisk(inner);
        using var buf = new NativeBuffer(4096);
        Assert.Equal(DiskIoResult.Ok, plain.ReadVectored(512, Vectors(buf, 1024, 3072)));
        Assert.True(buf.Span.SequenceEqual(Scratch.Pattern(512, 4096)));
        Assert.Equal(2, inner.Counters.Reads);
        Assert.Equal(DiskIoStatus.OutOfRange, plain.WriteVectored(Size - 1024, Vectors(buf, 1024, 3072)).Status);
        Assert.Equal(0, inner.Counters.Writes);
    }

    [SkippableFact]
    public void DirectIoTakesAlignedVectorsAsIsAndBouncesMisalignedOnes()
    {
        var warnings = new List<string>();
        using var disk = DiskOpener.Open(new DiskOpenOptions(_image, Cache: DiskCacheMode.None) { Warn = warnings.Add });
        Skip.IfNot(disk.DirectIo, $"O_DIRECT is not available on {_scratch.Dir}: {string.Join("; ", warnings)}");
        int align = (int)Math.Max(4096, Math.Max(disk.Alignment.Offset, disk.Alignment.Memory));

        using var aligned = new NativeBuffer(4 * align);
        Assert.Equal(DiskIoResult.Ok, disk.ReadVectored((ulong)align, Vectors(aligned, align, 2 * align, align)));
        Assert.True(aligned.Span.SequenceEqual(Scratch.Pattern(align, 4 * align)));
        Assert.Equal(0, disk.Counters.Bounced);

        // A buffer at an odd address (sector-sized lengths, as virtio-blk sends them): buffer by buffer, bounced.
        using var odd = new NativeBuffer(2048, misalign: 8);
        Scratch.Pattern(4242, 2048).CopyTo(odd.Span);
        Assert.Equal(DiskIoResult.Ok, disk.WriteVectored(8192 + 512, Vectors(odd, 512, 1536)));
        Assert.True(disk.Counters.Bounced >= 1);
        odd.Span.Clear();
        Assert.Equal(DiskIoResult.Ok, disk.ReadVectored(8192 + 512, Vectors(odd, 1536, 512)));
        Assert.True(odd.Span.SequenceEqual(Scratch.Pattern(4242, 2048)));

        disk.Dispose();
        byte[] expected = Scratch.Pattern(0, Size);
        Scratch.Pattern(4242, 2048).CopyTo(expected, 8192 + 512);
        Assert.Equal(expected, File.ReadAllBytes(_image));
    }

    /// <summary>A backend that only has the single-buffer calls: exercises the interface's default vectored methods.</summary>
    private sealed class PlainDisk(RawDisk inner) : IDiskBackend
    {
        public ulong SizeBytes => inner.SizeBytes;
        public bool ReadOnly => inner.ReadOnly;
        public int LogicalBlockSize => 512;
        public string Describe => "plain";
        public DiskCounters Counters => inner.Counters;
        public DiskIoResult Read(ulong offset, Span<byte> destination) => inner.Read(offset, destination);
        public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source) => inner.Write(offset, source);
        public DiskIoResult Flush() => inner.Flush();
        public DiskIoResult Discard(ulong offset, ulong length) => inner.Discard(offset, length);
        public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap) => inner.WriteZeroes(offset, length, unmap);
        public void Dispose() { }
    }
}
