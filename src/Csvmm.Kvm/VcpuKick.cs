using Csvmm.Sys;

namespace Csvmm.Kvm;

/// <summary>
/// Interrupting a vCPU thread that sits in KVM_RUN: set kvm_run.immediate_exit, then send the thread
/// <see cref="Signal"/>, whose handler does nothing, so KVM_RUN returns EINTR (see <see cref="ThreadSignals"/> for the
/// handler and <see cref="KickTarget"/> for sending it safely).
/// </summary>
public static class VcpuKick
{
    /// <summary>The signal used to kick vCPU threads (SIGUSR2: unused by the .NET runtime).</summary>
    public const int Signal = 12;
    private static int s_installed;

    /// <summary>Installs the no-op handler once per process (no SA_RESTART: KVM_RUN must return EINTR).</summary>
    public static void Install()
    {
        if (Interlocked.Exchange(ref s_installed, 1) != 0) return;
        ThreadSignals.InstallNoOpHandler(Signal);
    }

    /// <summary>A kick target for a vCPU thread: it sends <see cref="Signal"/>.</summary>
    public static KickTarget NewTarget() => new(Signal);
}
