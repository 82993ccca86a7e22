using System.Runtime.InteropServices;

namespace Csvmm.Sys;

/// <summary>struct pollfd (poll.h): int fd, short events, short revents; 8 bytes (proven against &lt;poll.h&gt;).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct PollFd
{
    internal int Fd;
    public short Events;
    public short REvents;

    /// <summary>POLLIN: readable.</summary>
    public const short In = 0x1;

    /// <summary>An entry for <paramref name="handle"/>; the caller keeps the handle referenced (DangerousAddRef) while it polls.</summary>
    public static PollFd For(EventFdHandle handle, short events = In) => new() { Fd = handle.Fd, Events = events };

    /// <summary>Whether the entry came back with any event.</summary>
    public readonly bool Ready => REvents != 0;
}

/// <summary>poll(2).</summary>
public static unsafe partial class Poll
{
    /// <summary>Waits for any entry (timeout in ms, -1 forever); returns the count ready, 0 on timeout, or -errno (EINTR included: the caller decides).</summary>
    public static int Wait(Span<PollFd> fds, int timeoutMs)
    {
        // Safe: the span is pinned for the call and the kernel writes only revents inside it.
        fixed (PollFd* p = fds)
        {
            int r = poll(p, (nuint)fds.Length, timeoutMs);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r;
        }
    }

    [LibraryImport("libc.so.6", EntryPoint = "poll", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint nfds, int timeout);
}
