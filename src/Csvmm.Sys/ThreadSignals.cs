using System.Runtime.InteropServices;

namespace Csvmm.Sys;

/// <summary>glibc's struct sigaction on x86-64 (152 bytes; proven against &lt;signal.h&gt; in Sys.Tests).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SigAction
{
    public nint sa_handler;
    public fixed ulong sa_mask[16];
    public int sa_flags;
    public nint sa_restorer;
}

/// <summary>
/// Signals aimed at one thread, to interrupt a blocking system call on it (KVM_RUN, poll): a handler that does
/// nothing, installed without SA_RESTART so the call returns EINTR, and pthread_kill. The handler is a native libc
/// function with no side effects (<c>abs(int)</c>): running managed code inside a signal handler is not safe.
/// </summary>
public static unsafe partial class ThreadSignals
{
    [LibraryImport("libc.so.6", EntryPoint = "sigaction", SetLastError = true)]
    private static partial int sigaction(int signum, SigAction* act, SigAction* oldact);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_self")]
    private static partial nuint pthread_self();

    [LibraryImport("libc.so.6", EntryPoint = "pthread_kill")]
    private static partial int pthread_kill(nuint thread, int sig);

    /// <summary>Makes <paramref name="signal"/> do nothing but interrupt the thread it is sent to (process-wide).</summary>
    /// <exception cref="SysException">sigaction failed.</exception>
    public static void InstallNoOpHandler(int signal)
    {
        nint libc = NativeLibrary.Load("libc.so.6");
        var act = new SigAction { sa_handler = NativeLibrary.GetExport(libc, "abs"), sa_flags = 0 };
        if (sigaction(signal, &act, null) != 0)
            SysException.ThrowErrno($"sigaction({signal})", Marshal.GetLastPInvokeError());
    }

    [LibraryImport("libc.so.6", EntryPoint = "gettid")]
    private static partial int gettid();

    /// <summary>The calling thread's kernel thread id (gettid): what QMP's query-cpus-fast reports as thread-id.</summary>
    public static long CurrentThreadId() => gettid();

    /// <summary>The calling thread's pthread_t.</summary>
    internal static nuint CurrentThread() => pthread_self();

    /// <summary>pthread_kill: 0 or an errno. Only for a thread known to be alive (see <see cref="KickTarget"/>).</summary>
    internal static int Send(nuint thread, int signal) => pthread_kill(thread, signal);
}

/// <summary>
/// A thread that can be kicked out of a blocking call (KVM_RUN) by a signal whose handler does nothing (for vCPUs: Csvmm.Kvm.VcpuKick.Signal). The thread itself calls
/// <see cref="Enter"/> when it starts and <see cref="Leave"/> before it ends; <see cref="Kick"/> signals it only in
/// between, under the same lock, so a pthread_t is never used once its thread may be gone (pthread_kill on an exited
/// thread's id is undefined behaviour: the id can be reused or freed). Kicks are rare (stop, pause, reset); the lock is
/// taken by the thread only at its start and end, never in its run loop.
/// </summary>
public sealed class KickTarget
{
    private readonly Lock _lock = new();
    private readonly int _signal;
    private nuint _thread; // 0: the thread is not between Enter and Leave

    /// <param name="signal">The signal <see cref="Kick"/> sends; its handler must be installed (<see cref="ThreadSignals.InstallNoOpHandler"/>).</param>
    public KickTarget(int signal) => _signal = signal;

    /// <summary>True between the thread's <see cref="Enter"/> and <see cref="Leave"/>.</summary>
    public bool IsRegistered
    {
        get { lock (_lock) return _thread != 0; }
    }

    /// <summary>Registers the calling thread as the target. Call it on the thread to be kicked.</summary>
    public void Enter()
    {
        lock (_lock)
        {
            if (_thread != 0) throw new InvalidOperationException("a thread is already registered as this kick target");
            _thread = ThreadSignals.CurrentThread();
        }
    }

    /// <summary>Unregisters the thread: from now on <see cref="Kick"/> sends nothing. Call it on the same thread, before it ends.</summary>
    public void Leave()
    {
        lock (_lock) _thread = 0;
    }

    /// <summary>Signals the registered thread (a blocking call on it returns EINTR); false when no thread is registered.</summary>
    public bool Kick()
    {
        lock (_lock)
        {
            if (_thread == 0) return false;
            // The thread cannot finish Leave() while this lock is held, so it is alive and its id valid.
            return ThreadSignals.Send(_thread, _signal) == 0;
        }
    }
}
