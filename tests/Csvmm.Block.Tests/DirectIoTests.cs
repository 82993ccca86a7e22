using System.Diagnostics;

namespace Csvmm.Block.Tests;

/// <summary>cache=none: O_DIRECT where the file system takes it, the aligned bounce path where a request does not fit, the buffered fallback.</summary>
public sealed class DirectIoTests : IDisposable
{
    private const int Size = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly string _image;
    private readonly List<string> _warnings = [];

    public DirectIoTests() => _image = _scratch.Image("direct.img", Size);

    public void Dispose() => _scratch.Dispose();

    private RawDisk OpenDirect() =>
        DiskOpener.Open(new DiskOpenOptions(_image, Cache: DiskCacheMode.None) { Warn = _warnings.Add });

    [Fact]
    public void CacheNoneUsesODirectOrSaysWhyNot()
    {
        using RawDisk disk = OpenDirect();
        if (disk.DirectIo)
        {
            Assert.Empty(_warnings);
            Assert.True(disk.Alignment.IsDirect);
            Assert.Contains(disk.Alignment.Source, new[] { "STATX_DIOALIGN", "st_blksize" });
            Assert.True(disk.Alignment.Offset is >= 1 and <= 65536);
            Assert.Contains("cache=none (O_DIRECT, alignment", disk.Describe);
        }
        else
        {
            // The documented fallback: a warning naming the path, and buffered I/O.
            string warning = Assert.Single(_warnings);
            Assert.StartsWith($"{_image}: cache=none: ", warning);
            Assert.EndsWith("; using buffered I/O (as cache=writeback)", warning);
            Assert.Contains("cache=writeback", disk.Describe);
        }
    }

    [SkippableFact]
    public unsafe void AlignedRequestsGoStraightToTheFileUnalignedOnesAreBounced()
    {
        using RawDisk disk = OpenDirect();
        Skip.IfNot(disk.DirectIo, $"O_DIRECT is not available on {_scratch.Dir}: {string.Join("; ", _warnings)}");
        int align = (int)Math.Max(disk.Alignment.Offset, disk.Alignment.Memory);

        using var aligned = new NativeBuffer(65536);
        Assert.Equal(DiskIoResult.Ok, disk.Read(64 * 1024, aligned.Span));
        Assert.True(aligned.Span.SequenceEqual(Scratch.Pattern(64 * 1024, 65536)));
        Scratch.Pattern(5, 65536).CopyTo(aligned.Span);
        Assert.Equal(DiskIoResult.Ok, disk.Write(128 * 1024, aligned.Span));
        Assert.Equal(0, disk.Counters.Bounced);

        // An unaligned offset and length: read-modify-write of the partial blocks at both ends.
        byte[] odd = Scratch.Pattern(77, 1000);
        Assert.Equal(DiskIoResult.Ok, disk.Write(100, odd));
        Assert.Equal(1, disk.Counters.Bounced);
        var back = new byte[1000];
        Assert.Equal(DiskIoResult.Ok, disk.Read(100, back));
        Assert.Equal(odd, back);
        Assert.Equal(2, disk.Counters.Bounced);

        // Aligned offset and length, misaligned buffer address.
        if (disk.Alignment.Memory > 1)
        {
            using var misaligned = new NativeBuffer(align, misalign: 1);
            Assert.Equal(DiskIoResult.Ok, disk.Read(512 * 1024, misaligned.Span));
            Assert.Equal(3, disk.Counters.Bounced);
            Assert.True(misaligned.Span.SequenceEqual(Scratch.Pattern(512 * 1024, align)));
        }

        // The page cache (a buffered reader) sees what O_DIRECT wrote, and nothing else moved.
        byte[] expected = Scratch.Pattern(0, Size);
        Scratch.Pattern(5, 65536).CopyTo(expected, 128 * 1024);
        odd.CopyTo(expected, 100);
        disk.Dispose();
        Assert.Equal(expected, File.ReadAllBytes(_image));
    }

    [SkippableFact]
    public void UnalignedRequestsLargerThanTheBounceBufferAreDoneInChunks()
    {
        using RawDisk disk = OpenDirect();
        Skip.IfNot(disk.DirectIo, "O_DIRECT is not available here");
        const int offset = 7, length = 700_001; // more than two 256 KiB bounce chunks, odd at both ends
        byte[] payload = Scratch.Pattern(999, length);
        Assert.Equal(DiskIoResult.Ok, disk.Write(offset, payload));
        var back = new byte[length];
        Assert.Equal(DiskIoResult.Ok, disk.Read(offset, back));
        Assert.Equal(payload, back);

        disk.Dispose();
        byte[] expected = Scratch.Pattern(0, Size);
        payload.CopyTo(expected, offset);
        Assert.Equal(expected, File.ReadAllBytes(_image));
    }

    [SkippableFact]
    public void ConcurrentUnalignedWritesIntoSharedBlocksAllLand()
    {
        using RawDisk disk = OpenDirect();
        Skip.IfNot(disk.DirectIo, "O_DIRECT is not available here");
        // Threads write interleaved 100-byte pieces: neighbours share O_DIRECT blocks, so each write is a
        // read-modify-write of a block another thread is changing too. None may undo another's bytes.
        const int threads = 4, piecesPerThread = 64, piece = 100;
        var workers = new Thread[threads];
        var failures = new List<DiskIoResult>();
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            workers[t] = new Thread(() =>
            {
                for (int i = 0; i < piecesPerThread; i++)
                {
                    long offset = (long)(i * threads + id) * piece + 3;
                    DiskIoResult r = disk.Write((ulong)offset, Scratch.Pattern(offset + 555, piece));
                    if (!r.IsOk) lock (failures) failures.Add(r);
                }
            });
        }
        foreach (Thread w in workers) w.Start();
        foreach (Thread w in workers) w.Join();
        Assert.Empty(failures);

        disk.Dispose();
        byte[] file = File.ReadAllBytes(_image);
        int total = threads * piecesPerThread * piece;
        Assert.True(file.AsSpan(3, total).SequenceEqual(Scratch.Pattern(3 + 555, total)));
        Assert.True(file.AsSpan(3 + total).SequenceEqual(Scratch.Pattern(3 + total, Size - 3 - total)));
    }

    [Fact]
    public void AFileSystemThatRefusesODirectFallsBackToBufferedWithAWarning()
    {
        var host = new RefusingDirectHost();
        using RawDisk disk = DiskOpener.Open(new DiskOpenOptions(_image, Cache: DiskCacheMode.None) { Warn = _warnings.Add }, host);
        Assert.True(host.RefusedDirect);
        Assert.False(disk.DirectIo);
        Assert.Equal(DirectIoAlignment.Buffered, disk.Alignment);
        Assert.Equal($"{_image}: cache=none: the file system refused O_DIRECT; using buffered I/O (as cache=writeback)", Assert.Single(_warnings));

        // Buffered I/O still works, unaligned requests need no bounce.
        byte[] odd = Scratch.Pattern(1, 333);
        Assert.Equal(DiskIoResult.Ok, disk.Write(17, odd));
        var back = new byte[333];
        Assert.Equal(DiskIoResult.Ok, disk.Read(17, back));
        Assert.Equal(odd, back);
        Assert.Equal(0, disk.Counters.Bounced);
    }

    [SkippableFact]
    public void ALoopBlockDeviceIsSizedByIoctlAndAlignedBySectorSize()
    {
        Skip.IfNot(Scratch.IsRoot, "attaching a loop device needs root");
        string? loop = Run("losetup", "--find", "--show", _image);
        Skip.If(loop is null, "losetup could not attach a loop device here");
        try
        {
            using (RawDisk disk = DiskOpener.Open(new DiskOpenOptions(loop!, Cache: DiskCacheMode.None) { Warn = _warnings.Add }))
            {
                Assert.Equal(DiskFileKind.BlockDevice, disk.Kind);
                Assert.Equal((ulong)Size, disk.SizeBytes);               // st_size is 0 for a device: this came from BLKGETSIZE64
                Assert.True(disk.DirectIo, string.Join("; ", _warnings));
                Assert.Equal("BLKSSZGET", disk.Alignment.Source);
                Assert.Equal(512u, disk.Alignment.Offset);
                Assert.Contains("raw block device", disk.Describe);

                byte[] payload = Scratch.Pattern(31, 8192);
                Assert.Equal(DiskIoResult.Ok, disk.Write(8192, payload));
                Assert.Equal(DiskIoResult.Ok, disk.Write(50, payload.AsSpan(0, 10)));   // bounced
                Assert.Equal(DiskIoResult.Ok, disk.Flush());
                var back = new byte[8192];
                Assert.Equal(DiskIoResult.Ok, disk.Read(8192, back));
                Assert.Equal(payload, back);
                Assert.Equal(DiskIoResult.OutOfRange, disk.Read(Size - 4096, new byte[8192]));

                // A block device refuses fallocate on a range that is not sector aligned (EINVAL): write-zeroes
                // then falls back to writing zeroes, and a discard is skipped as the hint it is.
                Assert.Equal(DiskIoResult.Ok, disk.WriteZeroes(100_000, 1000, unmap: true));
                Assert.Equal(DiskIoResult.Ok, disk.WriteZeroes(200_704, 4096, unmap: false));   // aligned: fallocate itself
                Assert.Equal(DiskIoResult.Ok, disk.Discard(300_001, 10));
                Assert.Equal(DiskIoResult.Ok, disk.Flush());
                Assert.Equal(1, disk.Counters.Errors);    // only the out-of-range read failed
            }
            // A read-only opener shares the device with another read-only opener.
            using RawDisk ro1 = DiskOpener.Open(loop!, readOnly: true);
            using RawDisk ro2 = DiskOpener.Open(loop!, readOnly: true);
            Assert.Equal(DiskLockMode.Shared, ro2.LockMode);
        }
        finally
        {
            Run("losetup", "--detach", loop!);
        }
        byte[] file = File.ReadAllBytes(_image);
        Assert.Equal(Scratch.Pattern(31, 8192), file.AsSpan(8192, 8192).ToArray());
        Assert.Equal(Scratch.Pattern(31, 10), file.AsSpan(50, 10).ToArray());
        Assert.Equal(new byte[1000], file.AsSpan(100_000, 1000).ToArray());
        Assert.Equal(new byte[4096], file.AsSpan(200_704, 4096).ToArray());
        Assert.Equal(Scratch.Pattern(99_000, 1000), file.AsSpan(99_000, 1000).ToArray());
        Assert.Equal(Scratch.Pattern(101_000, 1000), file.AsSpan(101_000, 1000).ToArray());
        Assert.Equal(Scratch.Pattern(300_001, 10), file.AsSpan(300_001, 10).ToArray());
    }

    /// <summary>Runs a tool; its trimmed stdout, or null when it cannot be run or fails.</summary>
    private static string? Run(string tool, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in args) psi.ArgumentList.Add(a);
            using Process p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    /// <summary>The real host, except that F_SETFL with O_DIRECT fails with EINVAL, as on a file system without direct I/O.</summary>
    private sealed class RefusingDirectHost : IDiskHost
    {
        private const int ODirect = 0x4000, Einval = 22;

        public bool RefusedDirect { get; private set; }

        public int Open(string path, int flags, out DiskFileHandle handle) => NativeDiskHost.Instance.Open(path, flags, out handle);

        public int SetStatusFlags(DiskFileHandle handle, int flags)
        {
            if ((flags & ODirect) != 0)
            {
                RefusedDirect = true;
                return Einval;
            }
            return NativeDiskHost.Instance.SetStatusFlags(handle, flags);
        }
    }
}
