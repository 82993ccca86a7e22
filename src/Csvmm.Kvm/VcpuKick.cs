using System.Runtime.InteropServices;

namespace Csvmm.Kvm;

/// <summary>
/// Interrupting a vCPU thread that sits in KVM_RUN: set kvm_run.immediate_exit, then send the thread a
/// signal whose handler does nothing, so KVM_RUN returns EINTR. The handler is a native libc function
/// with no side effects (<c>abs(int)</c>): running managed code inside a signal handler is not safe.
/// </summary>
public static unsafe partial class VcpuKick
{
    /// <summary>The signal used to kick vCPU threads (SIGUSR2: unused by the .NET runtime).</summary>
    public const int Signal = 12;
    private static int s_installed;

    [StructLayout(LayoutKind.Sequential)]
    private struct SigAction
    {
        public nint sa_handler;
        public fixed ulong sa_mask[16];
        public int sa_flags;
        public nint sa_restorer;
    }

    [LibraryImport("libc.so.6", EntryPoint = "sigaction", SetLastError = true)]
    private static partial int sigaction(int signum, SigAction* act, SigAction* oldact);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_self")]
    private static partial nuint pthread_self();

    [LibraryImport("libc.so.6", EntryPoint = "pthread_kill")]
    private static partial int pthread_kill(nuint thread, int sig);

    /// <summary>Installs the no-op handler once per process (no SA_RESTART: KVM_RUN must return EINTR).</summary>
    public static void Install()
    {
        if (Interlocked.Exchange(ref s_installed, 1) != 0) return;
        nint libc = NativeLibrary.Load("libc.so.6");
        var act = new SigAction { sa_handler = NativeLibrary.GetExport(libc, "abs"), sa_flags = 0 };
        if (sigaction(Signal, &act, null) != 0)
            throw new KvmException($"sigaction(SIGUSR2) failed (errno {Marshal.GetLastPInvokeError()})");
    }

    /// <summary>The calling thread's pthread id, to be recorded by a vCPU thread when it starts.</summary>
    public static nuint CurrentThread() => pthread_self();

    /// <summary>Sends the kick signal to <paramref name="thread"/>.</summary>
    public static void Kick(nuint thread)
    {
        if (thread != 0) pthread_kill(thread, Signal);
    }
}
