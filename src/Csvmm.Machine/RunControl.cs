using Csvmm.Devices;

namespace Csvmm.Machine;

/// <summary>
/// The one-shot "this VM is done" latch shared by devices (reset / power-off), vCPU threads (crashes), and the
/// host side (signals, Ctrl-A x, timeout). The first outcome wins; later ones are ignored.
/// </summary>
public sealed class RunControl : IVmControl
{
    private readonly ManualResetEventSlim _done = new(false);
    private VmOutcome? _outcome;

    public bool IsFinished => Volatile.Read(ref _outcome) is not null;
    public VmOutcome? Outcome => Volatile.Read(ref _outcome);
    public WaitHandle WaitHandle => _done.WaitHandle;

    /// <summary>Records the outcome if none was recorded yet; returns whether this call won.</summary>
    public bool Finish(VmOutcome outcome)
    {
        if (Interlocked.CompareExchange(ref _outcome, outcome, null) is not null) return false;
        _done.Set();
        return true;
    }

    public bool Wait(TimeSpan? timeout) => timeout is { } t ? _done.Wait(t) : _done.Wait(Timeout.Infinite);

    public void RequestReset(string reason) => Finish(new VmOutcome(VmExitKind.Reset, reason));
    public void RequestPowerOff(string reason) => Finish(new VmOutcome(VmExitKind.PowerOff, reason));
}
