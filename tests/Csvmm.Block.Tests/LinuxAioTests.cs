using Microsoft.Win32.SafeHandles;

namespace Csvmm.Block.Tests;

/// <summary>
/// The Linux AIO request queue of an O_DIRECT disk: many requests in flight, data byte for byte, what it refuses,
/// short and failed completions, the synchronous fallback when io_submit stops taking requests.
/// </summary>
public sealed unsafe class LinuxAioTests : IDisposable
{
    private const int Size = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public LinuxAioTests() => _image = _scratch.Image("aio.img", Size);

    public void Dispose() => _scratch.Dispose();

    private RawDisk OpenDirect(bool readOnly = false, string? path = null)
    {
        var warnings = new List<string>();
        RawDisk disk = DiskOpener.Open(new DiskOpenOptions(path ?? _image, readOnly, DiskCacheMode.None) { Warn = warnings.Add });
        if (!disk.DirectIo)
        {
            disk.Dispose();
            Skip.If(true, $"O_DIRECT is not available on {_scratch.Dir}: {string.Join("; ", warnings)}");
        }
        return disk;
    }

    private static LinuxAioQueue Open(RawDisk disk, int depth, int maxBuffers = 4)
    {
        var q = disk.OpenRequestQueue(depth, maxBuffers);
        Assert.True(q is not null, $"io_setup failed with errno {disk.LastQueueError}");
        return Assert.IsType<LinuxAioQueue>(q);
    }

    /// <summary>Reaps until <paramref name="count"/> completions arrived (blocking), in token order.</summary>
    private static DiskCompletion[] ReapAll(IDiskRequestQueue q, int count)
    {
        var all = new List<DiskCompletion>();
        var buffer = new DiskCompletion[q.Capacity];
        while (all.Count < count)
        {
            int n = q.Reap(buffer, 1);
            Assert.True(n > 0, "Reap returned nothing while requests were in flight");
            all.AddRange(buffer.AsSpan(0, n).ToArray());
        }
        Assert.Equal(0, q.InFlight);
        return [.. all.OrderBy(c => c.Token)];
    }

    [Fact]
    public void BufferedDiskHasNoQueue()
    {
        using RawDisk disk = DiskOpener.Open(new DiskOpenOptions(_image));
        Assert.Null(disk.OpenRequestQueue(32, 4));
    }

    [SkippableFact]
    public void ManyReadsInFlightReturnTheFileBytes()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 64);
        const int n = 64, chunk = 8192;
        using var memory = new NativeBuffer(n * chunk);
        var rng = new Random(7);
        var offsets = new ulong[n];
        for (int i = 0; i < n; i++)
        {
            offsets[i] = (ulong)rng.Next(Size / 4096) * 4096 % (Size - chunk);
            var span = memory.Span.Slice(i * chunk, chunk);
            // Even requests in one buffer, odd ones in two (a scatter read).
            IoVector[] bufs = i % 2 == 0
                ? [IoVector.FromPinned(span)]
                : [IoVector.FromPinned(span[..4096]), IoVector.FromPinned(span[4096..])];
            Assert.True(q.TryEnqueue(offsets[i], bufs, write: false, token: 1000 + (ulong)i));
        }
        Assert.Equal(n, q.InFlight);
        Assert.False(q.TryEnqueue(0, [IoVector.FromPinned(memory.Span[..4096])], false, 1), "the queue is full");
        q.Submit();
        Assert.Equal(n, q.Submitted);
        var done = ReapAll(q, n);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(1000 + (ulong)i, done[i].Token);
            Assert.Equal(DiskIoResult.Ok, done[i].Result);
            Assert.True(memory.Span.Slice(i * chunk, chunk).SequenceEqual(Scratch.Pattern((long)offsets[i], chunk)), $"request {i}");
        }
        Assert.Equal(n, disk.Counters.Reads);
        Assert.Equal((long)n * chunk, disk.Counters.BytesRead);
        Assert.Equal(0, q.Fallbacks + q.ShortCompletions);
    }

    [SkippableFact]
    public void CompletionsAreReadFromTheKernelsRingWithoutASystemCallAndMixWithIoGetevents()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 32);
        Assert.True(q.ReadsRing, "the AIO ring header (magic 0xa10a10a1, 32-byte header) was not recognised");
        const int chunk = 4096;
        using var memory = new NativeBuffer(32 * chunk);
        var buffer = new DiskCompletion[32];
        var seen = new HashSet<ulong>();
        // Many rounds: the ring's head wraps (the kernel sizes it to at least twice the depth), and Reap
        // (io_getevents) and Poll (the ring) take turns, so both must keep one head.
        for (int round = 0; round < 100; round++)
        {
            seen.Clear();
            for (int i = 0; i < 20; i++)
            {
                var span = memory.Span.Slice(i * chunk, chunk);
                span.Clear();
                Assert.True(q.TryEnqueue((ulong)((round + i) % 200) * chunk, [IoVector.FromPinned(span)], write: false, token: (ulong)i));
            }
            Assert.False(q.CompletionsReady, "nothing was submitted yet");
            q.Submit();
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (seen.Count < 20)
            {
                Assert.True(watch.ElapsedMilliseconds < 10_000, "completions never showed in the ring");
                int n = round % 3 == 2 ? q.Reap(buffer, 0) : (q.CompletionsReady ? q.Poll(buffer) : 0);
                for (int k = 0; k < n; k++)
                {
                    Assert.True(seen.Add(buffer[k].Token), $"token {buffer[k].Token} completed twice");
                    Assert.Equal(DiskIoResult.Ok, buffer[k].Result);
                }
            }
            Assert.Equal(0, q.InFlight);
            Assert.False(q.CompletionsReady);
            Assert.Equal(0, q.Poll(buffer));
            for (int i = 0; i < 20; i++)
                Assert.True(memory.Span.Slice(i * chunk, chunk).SequenceEqual(Scratch.Pattern((long)((round + i) % 200) * chunk, chunk)), $"round {round} request {i}");
        }
    }

    [SkippableFact]
    public void WritesLandInTheFile()
    {
        byte[] expected = Scratch.Pattern(0, Size);
        using (RawDisk disk = OpenDirect())
        using (var q = Open(disk, 16))
        {
            using var memory = new NativeBuffer(16 * 4096);
            for (int i = 0; i < 16; i++)
            {
                var span = memory.Span.Slice(i * 4096, 4096);
                Scratch.Pattern(999 + i, 4096).CopyTo(span);
                Scratch.Pattern(999 + i, 4096).CopyTo(expected, (i * 3 + 1) * 4096);
                Assert.True(q.TryEnqueue((ulong)(i * 3 + 1) * 4096, [IoVector.FromPinned(span)], write: true, token: (ulong)i));
            }
            q.Submit();
            Assert.All(ReapAll(q, 16), c => Assert.Equal(DiskIoResult.Ok, c.Result));
            Assert.Equal(16, disk.Counters.Writes);
        }
        Assert.Equal(expected, File.ReadAllBytes(_image));
    }

    [SkippableFact]
    public void RequestsTheQueueCannotTakeAreLeftToTheSynchronousPath()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 8, maxBuffers: 2);
        using var memory = new NativeBuffer(3 * 4096 + 64);
        IoVector page = IoVector.FromPinned(memory.Span[..4096]);
        ulong align = disk.Alignment.Offset;
        if (align > 1)
        {
            Assert.False(q.TryEnqueue(align / 2, [page], false, 1), "unaligned offset");
            Assert.False(q.TryEnqueue(0, [IoVector.FromPinned(memory.Span[..(int)(4096 - align / 2)])], false, 1), "unaligned length");
        }
        if (disk.Alignment.Memory > 1)
            Assert.False(q.TryEnqueue(0, [IoVector.FromPinned(memory.Span.Slice(1, 4096))], false, 1), "unaligned address");
        Assert.False(q.TryEnqueue(Size - 2048, [page], false, 1), "past the end");
        Assert.False(q.TryEnqueue(ulong.MaxValue - 100, [page], false, 1), "wrapping range");
        Assert.False(q.TryEnqueue(0, [page, page, page], false, 1), "more buffers than the queue was opened for");
        Assert.False(q.TryEnqueue(0, [], false, 1), "no buffers");
        Assert.Equal(0, q.InFlight);

        using RawDisk readOnly = OpenDirect(readOnly: true, path: _scratch.Image("ro.img", 65536));
        using var rq = Open(readOnly, 4);
        Assert.False(rq.TryEnqueue(0, [page], write: true, 1), "write to a read-only disk");
        Assert.True(rq.TryEnqueue(0, [page], write: false, 1));
        rq.Submit();
        Assert.Equal(DiskIoResult.Ok, ReapAll(rq, 1)[0].Result);
    }

    [SkippableFact]
    public void WhenIoSubmitStopsTakingRequestsTheRestAreServedSynchronously()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 8);
        q.SubmitBudget = 3; // the kernel takes 3, then "EAGAIN"
        using var memory = new NativeBuffer(8 * 4096);
        for (int i = 0; i < 8; i++)
            Assert.True(q.TryEnqueue((ulong)i * 8192, [IoVector.FromPinned(memory.Span.Slice(i * 4096, 4096))], false, (ulong)i));
        q.Submit();
        Assert.Equal(3, q.Submitted);
        Assert.Equal(5, q.Fallbacks);
        var done = ReapAll(q, 8);
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(DiskIoResult.Ok, done[i].Result);
            Assert.True(memory.Span.Slice(i * 4096, 4096).SequenceEqual(Scratch.Pattern(i * 8192, 4096)));
        }
    }

    [SkippableFact]
    public void AReadAcrossTheEndOfAShrunkFileIsShortThenEndOfFile()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 4);
        using (var f = File.OpenHandle(_image, FileMode.Open, FileAccess.ReadWrite)) RandomAccess.SetLength(f, Size - 4096);
        using var memory = new NativeBuffer(8192);
        Assert.True(q.TryEnqueue(Size - 8192, [IoVector.FromPinned(memory.Span)], false, 5));
        q.Submit();
        var c = ReapAll(q, 1)[0];
        Assert.Equal(5ul, c.Token);
        Assert.Equal(DiskIoStatus.EndOfFile, c.Result.Status);
        Assert.Equal(1, q.ShortCompletions);
        Assert.True(memory.Span[..4096].SequenceEqual(Scratch.Pattern(Size - 8192, 4096)), "the part before the end arrived");
        Assert.Equal(1, disk.Counters.Errors);
    }

    [Fact]
    public void ContinueFinishesShortTransfersAndMapsErrors()
    {
        string path = _scratch.Image("plain.img", 65536);
        using SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        int fd = (int)file.DangerousGetHandle();
        using var memory = new NativeBuffer(12288);
        IoVector* iov = stackalloc IoVector[3];
        iov[0] = IoVector.FromPinned(memory.Span[..4096]);
        iov[1] = IoVector.FromPinned(memory.Span.Slice(4096, 4096));
        iov[2] = IoVector.FromPinned(memory.Span.Slice(8192, 4096));

        Assert.Equal(DiskIoResult.Ok, LinuxAioQueue.Continue(fd, iov, 3, 4096, 12288, 12288, write: false));
        Assert.True(memory.Span.IndexOfAnyExcept((byte)0) < 0, "a complete transfer is not touched again");

        Assert.Equal(DiskIoResult.Host(5), LinuxAioQueue.Continue(fd, iov, 3, 4096, 12288, -5, write: false));
        Assert.Equal(DiskIoResult.Host(28), LinuxAioQueue.Continue(fd, iov, 3, 4096, 12288, -28, write: true));
        Assert.Equal(DiskIoStatus.HostError, LinuxAioQueue.Continue(fd, iov, 3, 4096, 12288, 12289, write: false).Status);

        // The kernel moved 6000 bytes (into the middle of buffer 1): the rest comes from the file at 4096 + 6000.
        Assert.Equal(DiskIoResult.Ok, LinuxAioQueue.Continue(fd, iov, 3, 4096, 12288, 6000, write: false));
        Assert.True(memory.Span[..6000].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(memory.Span[6000..].SequenceEqual(Scratch.Pattern(4096 + 6000, 12288 - 6000)));

        // A short write continues from a buffer boundary.
        memory.Span.Fill(0x5A);
        Assert.Equal(DiskIoResult.Ok, LinuxAioQueue.Continue(fd, iov, 3, 0, 12288, 8192, write: true));
        byte[] back = File.ReadAllBytes(path);
        Assert.True(back.AsSpan(8192, 4096).IndexOfAnyExcept((byte)0x5A) < 0);
        Assert.True(back.AsSpan(0, 8192).SequenceEqual(Scratch.Pattern(0, 8192)), "what the kernel reported done is not written again");
    }

    [SkippableFact]
    public void DiscardAllWaitsForWhatWasSubmittedAndForgetsTheRest()
    {
        using RawDisk disk = OpenDirect();
        using var q = Open(disk, 32);
        using var memory = new NativeBuffer(32 * 65536);
        for (int i = 0; i < 16; i++)
            Assert.True(q.TryEnqueue((ulong)i * 65536, [IoVector.FromPinned(memory.Span.Slice(i * 65536, 65536))], false, (ulong)i));
        q.Submit();
        for (int i = 16; i < 32; i++)
            Assert.True(q.TryEnqueue((ulong)(i - 16) * 65536, [IoVector.FromPinned(memory.Span.Slice(i * 65536, 65536))], false, (ulong)i));
        q.DiscardAll();
        Assert.Equal(0, q.InFlight);
        Assert.Equal(0, q.Reap(new DiskCompletion[32], 0));
        // The submitted ones finished (their data is there), the queued ones never started.
        Assert.True(memory.Span[..(16 * 65536)].SequenceEqual(Scratch.Pattern(0, 16 * 65536)));
        Assert.True(memory.Span[(16 * 65536)..].IndexOfAnyExcept((byte)0) < 0);
        // The queue is usable afterwards.
        Assert.True(q.TryEnqueue(0, [IoVector.FromPinned(memory.Span[..4096])], false, 99));
        q.Submit();
        Assert.Equal(99ul, ReapAll(q, 1)[0].Token);
    }

    [SkippableFact]
    public void TheQueueKeepsTheFdOpenPastTheDisksDispose()
    {
        RawDisk disk = OpenDirect();
        var q = Open(disk, 4);
        disk.Dispose();
        using var memory = new NativeBuffer(4096);
        Assert.True(q.TryEnqueue(4096, [IoVector.FromPinned(memory.Span)], false, 1));
        q.Submit();
        Assert.Equal(DiskIoResult.Ok, ReapAll(q, 1)[0].Result);
        q.Dispose();
        q.Dispose();
        Assert.Equal(0, q.Reap(new DiskCompletion[1], 0));
    }
}
