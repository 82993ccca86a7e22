using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Csvmm.Kvm;

/// <summary>Common base: a file descriptor owned by a SafeHandle, closed exactly once.</summary>
public abstract class FdHandle : SafeHandle
{
    protected FdHandle() : base(new IntPtr(-1), ownsHandle: true) { }

    public override bool IsInvalid => handle.ToInt64() < 0;

    protected override bool ReleaseHandle() => LibC.close((int)handle.ToInt64()) == 0;

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

    /// <summary>The raw fd for an ioctl inside an AddRef/Release bracket the caller owns.</summary>
    internal int RawFd => (int)handle.ToInt64();
}

/// <summary>/dev/kvm.</summary>
public sealed class KvmSystemHandle : FdHandle { }

/// <summary>A VM file descriptor from KVM_CREATE_VM.</summary>
public sealed class KvmVmHandle : FdHandle { }

/// <summary>A vCPU file descriptor from KVM_CREATE_VCPU.</summary>
public sealed class KvmVcpuHandle : FdHandle { }

/// <summary>An eventfd (ioeventfd/irqfd signalling between KVM, the I/O thread and devices).</summary>
public sealed class EventFdHandle : FdHandle
{
    /// <summary>Creates a non-blocking, close-on-exec eventfd.</summary>
    public static EventFdHandle Create()
    {
        var h = new EventFdHandle();
        int fd = LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (fd < 0) KvmException.ThrowErrno("eventfd", LibC.errno);
        h.Adopt(fd);
        return h;
    }

    /// <summary>Adds <paramref name="value"/> to the counter (wakes a reader / makes KVM inject an irqfd).</summary>
    public unsafe void Signal(ulong value = 1)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
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
            long n = LibC.read(RawFd, &value, 8);
            return n == 8 ? value : 0;
        }
        finally { if (added) DangerousRelease(); }
    }

    public int Fd => RawFd;
}
