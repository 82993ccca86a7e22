using System.Runtime.InteropServices;

namespace Csvmm.Virtio;

/// <summary>struct pollfd (poll.h): int fd, short events, short revents; 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short REvents;
}

/// <summary>The poll(2) binding the I/O threads wait with.</summary>
internal static unsafe partial class VirtioNative
{
    public const short PollIn = 0x1;
    public const int Eintr = 4;

    /// <summary>poll(2); returns the count of ready descriptors, or -1 with the error in <paramref name="errno"/>.</summary>
    public static int Poll(PollFd* fds, int count, int timeoutMs, out int errno)
    {
        int r = poll(fds, (nuint)count, timeoutMs);
        errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        return r;
    }

    /// <summary>read(2) of a non-blocking eventfd: resets its counter (nothing pending is fine).</summary>
    public static nint Read(int fd, void* buffer, nuint count) => read(fd, buffer, count);

    [LibraryImport("libc.so.6", EntryPoint = "read")]
    private static partial nint read(int fd, void* buffer, nuint count);

    [LibraryImport("libc.so.6", EntryPoint = "poll", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint nfds, int timeout);
}
