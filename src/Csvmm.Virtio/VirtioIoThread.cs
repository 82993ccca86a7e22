using System.Diagnostics;
using System.Runtime.InteropServices;
using Csvmm.Sys;

namespace Csvmm.Virtio;

/// <summary>What an I/O thread calls when queue <paramref name="slot"/>'s eventfd fired.</summary>
public interface IQueueProcessor
{
    /// <summary>Drains the queue at <paramref name="slot"/> (its position in the list the thread was started with).</summary>
    void ProcessQueue(int slot);

    /// <summary>The completion eventfd the thread was started with fired: collect finished asynchronous requests.</summary>
    void ProcessCompletions() { }
}

/// <summary>
/// A processor the I/O thread can busy-wait on: it looks for work (new buffers on a queue, finished asynchronous
/// requests) by reading memory, without system calls, and serves what it finds.
/// </summary>
public interface IQueuePoller
{
    /// <summary>Serves whatever is ready on any queue or among the completions; true when it found anything.</summary>
    bool Poll();

    /// <summary>
    /// True while asynchronous requests are in flight, so the next event is likely their completion; false when only
    /// the driver can bring more work. The thread adapts a separate spin window to each (they differ by orders of magnitude).
    /// </summary>
    bool AwaitingCompletions { get; }
}

/// <summary>
/// A device's I/O thread: waits with poll(2) on its queues' notification eventfds and a stop eventfd, and hands
/// each fired queue to the device. Started at activation, stopped (and joined) at reset or dispose; one instance
/// runs once. The loop allocates nothing.
/// </summary>
/// <remarks>
/// With a <see cref="PollMax"/> and a processor that is an <see cref="IQueuePoller"/>, the thread busy-waits before
/// it sleeps, as QEMU's adaptive polling does (aio_poll with poll-max-ns): a wake-up through poll(2) costs far more
/// than the wait itself when the next request or completion is only microseconds away (a cross-CPU wake-up, worse
/// nested). The spin window adapts per kind of wait: it stays when polling found work, grows (4 µs, then doubling)
/// when the thread slept but was woken within <see cref="PollMax"/>, and halves when the sleep was longer, so an idle
/// device spins for at most one window and then sleeps at no cost. The spin checks for a stop between looks and
/// never makes a system call; work it finds leaves counts in the eventfds, which are read off (then the processor
/// looks once more) before the thread sleeps.
/// </remarks>
public sealed class VirtioIoThread : IDisposable
{
    private readonly EventFdHandle[] _events;
    private readonly EventFdHandle? _completions;
    private readonly IQueueProcessor _processor;
    private readonly EventFdHandle _stop = EventFdHandle.Create();
    private readonly Thread _thread;
    private int _state; // 0 new, 1 started, 2 stopped
    private readonly long _pollMaxTicks;
    private readonly long _pollStartTicks;

    /// <param name="name">Thread name (diagnostics).</param>
    /// <param name="events">Notification eventfds, one per queue slot; the caller keeps them open until <see cref="Stop"/> returns.</param>
    /// <param name="processor">Called on this thread for every fired slot.</param>
    /// <param name="completions">
    /// A non-blocking eventfd that signals finished asynchronous disk requests (<see cref="IQueueProcessor.ProcessCompletions"/>
    /// resets it), or null; the caller keeps it open until <see cref="Stop"/> returns.
    /// </param>
    /// <param name="pollMax">
    /// The longest spin window before sleeping (zero: never spin). Only used when <paramref name="processor"/> is an
    /// <see cref="IQueuePoller"/>; at most <see cref="MaxPollMax"/>.
    /// </param>
    public VirtioIoThread(string name, IReadOnlyList<EventFdHandle> events, IQueueProcessor processor, EventFdHandle? completions = null,
        TimeSpan pollMax = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pollMax, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pollMax, MaxPollMax);
        if (processor is IQueuePoller && pollMax > TimeSpan.Zero)
        {
            _pollMaxTicks = Math.Max(1, (long)(pollMax.TotalSeconds * Stopwatch.Frequency));
            _pollStartTicks = Math.Clamp(Stopwatch.Frequency / 250_000, 1, _pollMaxTicks); // 4 µs
        }
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(processor);
        _events = [.. events];
        _completions = completions;
        _processor = processor;
        _thread = new Thread(Run) { Name = name, IsBackground = true };
    }

    /// <summary>The exception that ended the loop early (a device bug), or null.</summary>
    public Exception? Fault { get; private set; }

    /// <summary>Called on the I/O thread when the loop ends because of <see cref="Fault"/>.</summary>
    public Action<Exception>? Faulted { get; init; }

    /// <summary>The longest spin window a thread accepts (a spin must never hold a CPU for long).</summary>
    public static readonly TimeSpan MaxPollMax = TimeSpan.FromMilliseconds(1);

    /// <summary>Times poll(2) returned (diagnostics).</summary>
    public long Wakeups => Interlocked.Read(ref _wakeups);
    private long _wakeups;

    /// <summary>Times busy-waiting found work, so the thread did not sleep (diagnostics).</summary>
    public long PolledWork => Interlocked.Read(ref _polledWork);
    private long _polledWork;

    /// <summary>Spins that ended without work before the thread slept (diagnostics).</summary>
    public long PollTimeouts => Interlocked.Read(ref _pollTimeouts);
    private long _pollTimeouts;

    /// <summary>True when the thread busy-waits before sleeping.</summary>
    public bool Polls => _pollMaxTicks > 0;

    private bool Stopping => Volatile.Read(ref _state) == 2;

    /// <summary>True while the thread runs.</summary>
    public bool IsRunning => _thread.IsAlive;

    /// <summary>
    /// Starts the thread. It only wakes for notifications: one the driver sent before activation is still pending
    /// in its eventfd (the transport clears them at reset only), so nothing is lost.
    /// </summary>
    public void Start()
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0) throw new InvalidOperationException("the I/O thread was already started");
        Csvmm.Sys.ThreadConfinement.Start(_thread); // often on a vCPU thread, which may not create threads itself
    }

    /// <summary>Asks the loop to end and waits for it (requests in flight complete first). Idempotent.</summary>
    public void Stop()
    {
        int previous = Interlocked.Exchange(ref _state, 2);
        if (previous != 1) return;
        if (Thread.CurrentThread == _thread) throw new InvalidOperationException("an I/O thread cannot stop itself");
        _stop.Signal();
        _thread.Join();
    }

    private void Run()
    {
        int n = _events.Length;
        int total = n + (_completions is null ? 1 : 2); // queues, stop, [completions]
        var added = new bool[total];
        try
        {
            // Every handle is referenced for the thread's life, so the fds in the poll set stay the files they were.
            Span<PollFd> fds = stackalloc PollFd[total];
            for (int i = 0; i < n; i++)
            {
                _events[i].DangerousAddRef(ref added[i]);
                fds[i] = PollFd.For(_events[i]);
            }
            _stop.DangerousAddRef(ref added[n]);
            fds[n] = PollFd.For(_stop);
            if (_completions is not null)
            {
                _completions.DangerousAddRef(ref added[n + 1]);
                fds[n + 1] = PollFd.For(_completions);
            }

            Csvmm.Sys.ThreadConfinement.Enter(Csvmm.Sys.ThreadRole.DeviceIo); // what follows runs what the guest queued
            var poller = _pollMaxTicks > 0 ? (IQueuePoller)_processor : null;
            long idleWindow = 0, completionWindow = 0; // spin windows (Stopwatch ticks) per kind of wait
            bool polledSinceSleep = false; // work found by spinning may have left counts in the eventfds
            while (true)
            {
                long start = 0;
                bool completionWait = false;
                if (poller is not null)
                {
                    if (Stopping) return; // a device that always has work must still stop
                    completionWait = poller.AwaitingCompletions;
                    start = Stopwatch.GetTimestamp();
                    if (Spin(poller, start, completionWait ? completionWindow : idleWindow))
                    {
                        polledSinceSleep = true;
                        Interlocked.Increment(ref _polledWork);
                        continue; // found within the window: keep it
                    }
                    if (Stopping) return;
                    if (polledSinceSleep)
                    {
                        // Read off what the spinning left in the eventfds, then look once more: anything that arrives
                        // from here on signals again, so poll(2) sleeps only with nothing to do.
                        polledSinceSleep = false;
                        Drain();
                        if (poller.Poll())
                        {
                            polledSinceSleep = true;
                            Interlocked.Increment(ref _polledWork);
                            continue;
                        }
                    }
                }
                int r = Poll.Wait(fds, -1);
                if (r < 0)
                {
                    if (-r == Errno.Eintr) continue;
                    throw new InvalidOperationException($"poll failed with errno {-r}");
                }
                _wakeups++;
                if (fds[n].REvents != 0) return;
                if (poller is not null)
                {
                    long waited = Stopwatch.GetTimestamp() - start;
                    if (completionWait) completionWindow = Adapt(completionWindow, waited);
                    else idleWindow = Adapt(idleWindow, waited);
                }
                // Completions first: they free queue slots and finish what the guest waits for longest.
                if (total > n + 1 && fds[n + 1].REvents != 0) _processor.ProcessCompletions();
                for (int i = 0; i < n; i++)
                {
                    if (fds[i].REvents == 0) continue;
                    _events[i].Consume();
                    _processor.ProcessQueue(i);
                }
            }
        }
        catch (Exception e)
        {
            // A device bug must not take the VMM down from a background thread: record it and let the device fail.
            Fault = e;
            Faulted?.Invoke(e);
        }
        finally
        {
            for (int i = 0; i < n; i++) if (added[i]) _events[i].DangerousRelease();
            if (added[n]) _stop.DangerousRelease();
            if (total > n + 1 && added[n + 1]) _completions!.DangerousRelease();
        }
    }

    /// <summary>
    /// Looks for work until <paramref name="window"/> ticks after <paramref name="start"/>, a stop, or work found
    /// (true). No system call: the processor reads the rings, the clock is the vDSO's.
    /// </summary>
    private bool Spin(IQueuePoller poller, long start, long window)
    {
        if (window <= 0) return false;
        while (true)
        {
            if (poller.Poll()) return true;
            if (Stopping) return false;
            if (Stopwatch.GetTimestamp() - start >= window)
            {
                Interlocked.Increment(ref _pollTimeouts);
                return false;
            }
            Thread.SpinWait(8); // pause: leave the core to its sibling and the bus to the other CPUs
        }
    }

    /// <summary>
    /// The next spin window after a sleep that ended <paramref name="waited"/> ticks after the wait began: the same
    /// when the window covered it, halved when even the longest window would not have, else grown.
    /// </summary>
    internal long Adapt(long window, long waited)
    {
        if (waited <= window) return window;
        if (waited > _pollMaxTicks) return window / 2 < _pollStartTicks ? 0 : window / 2;
        return window == 0 ? _pollStartTicks : Math.Min(window * 2, _pollMaxTicks);
    }

    /// <summary>Resets the queue and completion eventfds (non-blocking reads) before the thread sleeps on them.</summary>
    private void Drain()
    {
        foreach (var e in _events) e.Consume();
        _completions?.Consume();
    }

    /// <summary>Stops the thread and closes the stop eventfd.</summary>
    public void Dispose()
    {
        Stop();
        _stop.Dispose();
    }
}
