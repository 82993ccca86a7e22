using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Csvmm.Sys;

/// <summary>
/// The bottom of csvmm's dependency graph: host primitives every layer shares (file descriptors, eventfds, poll,
/// errno). Each kind of descriptor is its own SafeHandle class; the raw int is reachable only from the interop
/// layers (Csvmm.Kvm, Csvmm.Block, Csvmm.Virtio), inside an AddRef/Release bracket.
/// </summary>
public abstract class FdHandle : SafeHandle
{
    protected FdHandle() : base(new IntPtr(-1), ownsHandle: true) { }

    public override bool IsInvalid => handle.ToInt64() < 0;

    protected override bool ReleaseHandle() => LibC.close((int)handle.ToInt64()) == 0;

    /// <summary>Takes ownership of <paramref name="fd"/> (allocate the handle before the call that makes the fd).</summary>
    internal void Adopt(int fd) => SetHandle(new IntPtr(fd));

    /// <summary>Runs <paramref name="call"/> with the raw fd while holding a reference, so the fd cannot be closed and reused underneath.</summary>
    internal int WithFd<TState>(TState state, Func<int, TState, int> call)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            return call((int)handle.ToInt64(), state);
        }
        finally
        {
            if (added) DangerousRelease();
        }
    }

    /// <summary>The raw fd for a call inside an AddRef/Release bracket the caller owns.</summary>
    internal int RawFd => (int)handle.ToInt64();
}

/// <summary>
/// A non-blocking, close-on-exec eventfd: the doorbell between KVM (ioeventfd, irqfd), the kernel's AIO completions,
/// the I/O threads and the devices. Signal and Consume never block and never throw.
/// </summary>
public sealed class EventFdHandle : FdHandle
{
    /// <summary>eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); throws <see cref="SysException"/>.</summary>
    public static EventFdHandle Create()
    {
        int errno = TryCreate(out EventFdHandle handle);
        if (errno != 0)
        {
            handle.Dispose();
            SysException.ThrowErrno("eventfd", errno);
        }
        return handle;
    }

    /// <summary>eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): 0 and a live handle, or the errno (and an invalid handle to dispose).</summary>
    public static int TryCreate(out EventFdHandle handle)
    {
        handle = new EventFdHandle(); // allocated first: nothing can fail between the fd and its owner
        int fd = LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (fd < 0) return LibC.errno;
        handle.Adopt(fd);
        return 0;
    }

    /// <summary>Adds <paramref name="value"/> to the counter (wakes a poller; makes KVM inject an irqfd).</summary>
    public unsafe void Signal(ulong value = 1)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            // Safe: 8 bytes from a local; the fd is held open by the AddRef.
            LibC.write(RawFd, &value, 8);
        }
        finally { if (added) DangerousRelease(); }
    }

    /// <summary>Reads and resets the counter; 0 when nothing was pending (non-blocking).</summary>
    public unsafe ulong Consume()
    {
        ulong value = 0;
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            // Safe: 8 bytes into a local; the fd is held open by the AddRef.
            long n = LibC.read(RawFd, &value, 8);
            return n == 8 ? value : 0;
        }
        finally { if (added) DangerousRelease(); }
    }

    /// <summary>The fd, for registering with KVM or poll inside an AddRef bracket (interop layers only).</summary>
    internal int Fd => RawFd;
}

/// <summary>The errno values csvmm acts on (asm-generic/errno*.h; proven against &lt;errno.h&gt; by the tests).</summary>
public static class Errno
{
    public const int Eperm = 1, Enoent = 2, Eintr = 4, Eio = 5, Ebadf = 9, Eagain = 11, Enomem = 12, Eacces = 13, Eisdir = 21,
        Einval = 22, Etxtbsy = 26, Erofs = 30, Erange = 34, Enolck = 37, Enosys = 38, Enodata = 61, Eopnotsupp = 95;

    /// <summary>strerror's text for <paramref name="errno"/>.</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}

/// <summary>The host-primitives layer's error: a failed system call, with its errno.</summary>
public sealed class SysException : Exception
{
    public SysException(string message, int errno = 0) : base(message) => Errno = errno;

    /// <summary>The errno of the failed call, or 0.</summary>
    public int Errno { get; }

    [DoesNotReturn]
    public static void ThrowErrno(string operation, int errno) =>
        throw new SysException($"{operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
}
