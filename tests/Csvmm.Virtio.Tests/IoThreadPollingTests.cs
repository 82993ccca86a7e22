using System.Diagnostics;
using Csvmm.Block;

using Csvmm.Sys;

namespace Csvmm.Virtio.Tests;

/// <summary>
/// Adaptive polling of the I/O thread: the spin window's rules, work found by spinning instead of a wake-up (queues
/// and Linux AIO completions read from the kernel's ring), an idle thread that sleeps, and a stop that is prompt even
/// while the thread spins.
/// </summary>
[Collection(AllocationCollection.Name)] // timing: not beside other tests' threads
public sealed class IoThreadPollingTests
{
    /// <summary>A processor whose work the test controls; Poll counts its calls.</summary>
    private sealed class FakePoller(EventFdHandle own) : IQueueProcessor, IQueuePoller
    {
        public volatile bool Endless;     // Poll always finds work
        public volatile bool ReKick;      // ProcessQueue signals the eventfd again (keeps the waits short)
        public long Polls, Processed;

        public void ProcessQueue(int slot)
        {
            Interlocked.Increment(ref Processed);
            if (ReKick) own.Signal();
        }

        public bool Poll()
        {
            Interlocked.Increment(ref Polls);
            return Endless;
        }

        public bool AwaitingCompletions => false;
    }

    private static readonly long Us = Stopwatch.Frequency / 1_000_000;

    [Fact]
    public void TheWindowStaysWhenItCoveredTheWaitGrowsWhenTheWaitWasShortAndShrinksWhenItWasLong()
    {
        using var e = EventFdHandle.Create();
        using var t = new VirtioIoThread("t", [e], new FakePoller(e), pollMax: TimeSpan.FromMicroseconds(50));
        Assert.True(t.Polls);
        long max = (long)(50e-6 * Stopwatch.Frequency), start = Stopwatch.Frequency / 250_000;
        Assert.Equal(start, t.Adapt(0, 10 * Us));                  // first short wait: start at 4 µs
        Assert.Equal(2 * start, t.Adapt(start, 10 * Us));          // still short of the wait: double
        Assert.Equal(max, t.Adapt(max / 2 + 1, 40 * Us));          // never past the maximum
        Assert.Equal(20 * Us, t.Adapt(20 * Us, 5 * Us));           // covered the wait: keep
        Assert.Equal(10 * Us, t.Adapt(20 * Us, 10_000 * Us));      // a long sleep: halve
        Assert.Equal(0, t.Adapt(start, 10_000 * Us));              // ... down to no spinning at all
        Assert.Equal(0, t.Adapt(0, 10_000 * Us));                  // an idle device stays at 0
    }

    [Fact]
    public void PollingIsOffWithoutAWindowOrAPoller()
    {
        using var e = EventFdHandle.Create();
        using var a = new VirtioIoThread("t", [e], new FakePoller(e));
        Assert.False(a.Polls);
        using var b = new VirtioIoThread("t", [e], new PlainProcessor(), pollMax: TimeSpan.FromMicroseconds(50));
        Assert.False(b.Polls);
        Assert.Throws<ArgumentOutOfRangeException>(() => new VirtioIoThread("t", [e], new FakePoller(e), pollMax: TimeSpan.FromSeconds(1)));
        using var image = new ScratchImage(1 << 20);
        using var disk = DiskOpener.Open(image.Path);
        Assert.Throws<ArgumentOutOfRangeException>(() => new VirtioBlk(disk, new VirtioBlkOptions { PollMax = TimeSpan.FromMicroseconds(-1) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VirtioBlk(disk, new VirtioBlkOptions { PollMax = TimeSpan.FromMilliseconds(2) }));
    }

    private sealed class PlainProcessor : IQueueProcessor
    {
        public void ProcessQueue(int slot) { }
    }

    [Fact]
    public void AStopWhileTheThreadSpinsOnEndlessWorkJoinsPromptly()
    {
        for (int round = 0; round < 10; round++)
        {
            using var e = EventFdHandle.Create();
            var p = new FakePoller(e) { ReKick = true };
            var t = new VirtioIoThread("t", [e], p, pollMax: VirtioIoThread.MaxPollMax);
            t.Start();
            e.Signal();
            // Short waits grow the window; once it is open, every look finds work and the thread never sleeps.
            Assert.True(PciTransportTests.SpinUntil(() => Interlocked.Read(ref p.Processed) > 20));
            p.Endless = true;
            Assert.True(PciTransportTests.SpinUntil(() => t.PolledWork > 1000), "the thread did not spin on the work it found");
            var watch = Stopwatch.StartNew();
            t.Dispose();
            Assert.False(t.IsRunning);
            Assert.True(watch.ElapsedMilliseconds < 5000, $"stop took {watch.ElapsedMilliseconds} ms"); // a hang never returns
            Assert.Null(t.Fault);
        }
    }

    [Fact]
    public void AnIdleThreadSleepsInPollAfterAtMostOneWindow()
    {
        using var e = EventFdHandle.Create();
        var p = new FakePoller(e) { ReKick = true };
        using var t = new VirtioIoThread("t", [e], p, pollMax: VirtioIoThread.MaxPollMax);
        t.Start();
        e.Signal();
        Assert.True(PciTransportTests.SpinUntil(() => Interlocked.Read(ref p.Processed) > 50));
        p.ReKick = false; // the work stops
        Thread.Sleep(200); // one window (1 ms at most) of spinning, then poll(2); generous for a loaded machine
        long polls = Interlocked.Read(ref p.Polls), wakeups = t.Wakeups;
        Thread.Sleep(100);
        Assert.Equal(polls, Interlocked.Read(ref p.Polls)); // no spinning while idle
        Assert.Equal(wakeups, t.Wakeups);
        Assert.True(t.IsRunning);

        long processed = Interlocked.Read(ref p.Processed);
        e.Signal(); // and a notification still wakes it
        Assert.True(PciTransportTests.SpinUntil(() => Interlocked.Read(ref p.Processed) > processed));
    }

    /// <summary>
    /// Reads 4 KiB at <paramref name="sector"/> into the aligned <paramref name="data"/> like a polling driver at queue
    /// depth 1: publish, kick, spin on used.idx (no sleep, so the next request follows the completion at once).
    /// </summary>
    private static byte ReadNow(BlkRig rig, ulong sector, ulong data)
    {
        ulong status = rig.StatusByte();
        ushort head = rig.Chain(new Buf(rig.Header(VirtioBlkConstants.TypeIn, sector), 16, false), new Buf(data, 4096, true),
            new Buf(status, 1, true));
        ushort before = rig.UsedIdx;
        rig.Publish(head, askForInterrupt: false);
        rig.Kick();
        var watch = Stopwatch.StartNew();
        while (rig.UsedIdx == before)
        {
            if (watch.ElapsedMilliseconds > 10_000) throw new TimeoutException("the read did not complete");
            Thread.SpinWait(10);
        }
        Assert.Equal(head, (ushort)rig.WaitUsed()[0].Id);
        return rig.Mem(status, 1)[0];
    }

    [SkippableFact]
    public void AioCompletionsAndRequestsAreFoundByPollingAndTheDataIsRight()
    {
        using var rig = new BlkRig(4 << 20, cache: DiskCacheMode.None,
            options: new VirtioBlkOptions { PollMax = VirtioIoThread.MaxPollMax });
        Skip.IfNot(rig.Disk.DirectIo, "O_DIRECT is not available under /var/tmp");
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        Assert.True(rig.Blk.AsyncIo);
        var thread = rig.Blk.IoThread!;
        Assert.True(thread.Polls);
        ulong data = rig.Alloc(4096, 4096);
        // With a 1 ms window requests and completions are found by spinning, not by a wake-up. How many depends on the
        // scheduler (a loaded CI machine deschedules the spinning thread), so read until polling has found plenty of
        // both — a thread that never polls fails at the deadline — and check every byte on the way.
        int n = 0;
        var deadline = Stopwatch.StartNew();
        while ((rig.Blk.Counters.PolledCompletions < 100 || thread.PolledWork < 100) && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            ulong sector = (ulong)(n * 8 % 8000);
            Assert.Equal(0, ReadNow(rig, sector, data));
            Assert.True(rig.Mem(data, 4096).SequenceEqual(rig.Initial.AsSpan((int)sector * 512, 4096)), $"sector {sector}");
            n++;
        }
        Assert.Equal(n, rig.Blk.Counters.AsyncRequests);
        Assert.True(rig.Blk.Counters.PolledCompletions >= 100, $"polled completions {rig.Blk.Counters.PolledCompletions} of {n}");
        Assert.True(thread.PolledWork >= 100, $"polled work {thread.PolledWork} of {n}");
    }

    [SkippableFact]
    public void AResetWhileTheThreadSpinsJoinsPromptlyAndLeavesNothingInFlight()
    {
        using var rig = new BlkRig(4 << 20, cache: DiskCacheMode.None,
            options: new VirtioBlkOptions { PollMax = VirtioIoThread.MaxPollMax });
        Skip.IfNot(rig.Disk.DirectIo, "O_DIRECT is not available under /var/tmp");
        for (int round = 0; round < 10; round++)
        {
            Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
            ulong data = rig.Alloc(4096, 4096);
            var open = Stopwatch.StartNew();
            for (int i = 0; rig.Blk.IoThread!.PolledWork == 0 && open.Elapsed < TimeSpan.FromSeconds(10); i++)
                Assert.Equal(0, ReadNow(rig, (ulong)(i * 8 % 8000), data)); // open the window
            Assert.True(rig.Blk.IoThread!.PolledWork > 0);
            var watch = Stopwatch.StartNew();
            rig.Status = 0; // reset: stops (joins) the spinning thread (a spin is capped at 1 ms; a hang never returns)
            Assert.True(watch.ElapsedMilliseconds < 5000, $"reset took {watch.ElapsedMilliseconds} ms");
            Assert.False(rig.Blk.IsRunning);
            Assert.Null(rig.Blk.Fault);
        }
    }

    [Fact]
    public void WithoutAsyncIoTheQueueIsPolledToo()
    {
        using var rig = new BlkRig(1 << 20, options: new VirtioBlkOptions { PollMax = VirtioIoThread.MaxPollMax });
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        Assert.False(rig.Blk.AsyncIo);
        ulong data = rig.Alloc(4096, 4096);
        var deadline = Stopwatch.StartNew();
        for (int i = 0; rig.Blk.IoThread!.PolledWork == 0 && deadline.Elapsed < TimeSpan.FromSeconds(10); i++)
            Assert.Equal(0, ReadNow(rig, (ulong)(i * 8 % 2000), data));
        Assert.True(rig.Blk.IoThread!.PolledWork > 0, "the queue was never found by polling");
        Assert.Equal(0, rig.Blk.Counters.PolledCompletions);
    }
}
