using System.Runtime.InteropServices;
using Csvmm.Kvm;

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
/// A device's I/O thread: waits with poll(2) on its queues' notification eventfds and a stop eventfd, and hands
/// each fired queue to the device. Started at activation, stopped (and joined) at reset or dispose; one instance
/// runs once. The loop allocates nothing.
/// </summary>
public sealed class VirtioIoThread : IDisposable
{
    private readonly EventFdHandle[] _events;
    private readonly SafeHandle? _completions;
    private readonly IQueueProcessor _processor;
    private readonly EventFdHandle _stop = EventFdHandle.Create();
    private readonly Thread _thread;
    private int _state; // 0 new, 1 started, 2 stopped

    /// <param name="name">Thread name (diagnostics).</param>
    /// <param name="events">Notification eventfds, one per queue slot; the caller keeps them open until <see cref="Stop"/> returns.</param>
    /// <param name="processor">Called on this thread for every fired slot.</param>
    /// <param name="completions">
    /// An eventfd that signals finished asynchronous disk requests (<see cref="IQueueProcessor.ProcessCompletions"/>
    /// resets it), or null; the caller keeps it open until <see cref="Stop"/> returns.
    /// </param>
    public VirtioIoThread(string name, IReadOnlyList<EventFdHandle> events, IQueueProcessor processor, SafeHandle? completions = null)
    {
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

    /// <summary>Times poll(2) returned (diagnostics).</summary>
    public long Wakeups => Interlocked.Read(ref _wakeups);
    private long _wakeups;

    /// <summary>True while the thread runs.</summary>
    public bool IsRunning => _thread.IsAlive;

    /// <summary>
    /// Starts the thread. It only wakes for notifications: one the driver sent before activation is still pending
    /// in its eventfd (the transport clears them at reset only), so nothing is lost.
    /// </summary>
    public void Start()
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0) throw new InvalidOperationException("the I/O thread was already started");
        _thread.Start();
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

    private unsafe void Run()
    {
        int n = _events.Length;
        int total = n + (_completions is null ? 1 : 2); // queues, stop, [completions]
        var added = new bool[total];
        try
        {
            PollFd* fds = stackalloc PollFd[total];
            for (int i = 0; i < n; i++)
            {
                _events[i].DangerousAddRef(ref added[i]);
                fds[i] = new PollFd { Fd = _events[i].Fd, Events = VirtioNative.PollIn };
            }
            _stop.DangerousAddRef(ref added[n]);
            fds[n] = new PollFd { Fd = _stop.Fd, Events = VirtioNative.PollIn };
            if (_completions is not null)
            {
                _completions.DangerousAddRef(ref added[n + 1]);
                fds[n + 1] = new PollFd { Fd = (int)_completions.DangerousGetHandle(), Events = VirtioNative.PollIn };
            }

            while (true)
            {
                int r = VirtioNative.Poll(fds, total, -1, out int errno);
                if (r < 0)
                {
                    if (errno == VirtioNative.Eintr) continue;
                    throw new InvalidOperationException($"poll failed with errno {errno}");
                }
                _wakeups++;
                if (fds[n].REvents != 0) return;
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

    /// <summary>Stops the thread and closes the stop eventfd.</summary>
    public void Dispose()
    {
        Stop();
        _stop.Dispose();
    }
}
