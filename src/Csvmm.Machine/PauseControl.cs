namespace Csvmm.Machine;

/// <summary>
/// Stops the vCPUs at an exit boundary and lets them go on (QMP <c>stop</c> / <c>cont</c>; later save and migration).
/// The controller calls <see cref="Pause"/> with a kick that makes every KVM_RUN return (immediate_exit + signal); each
/// vCPU thread, at the top of its loop, sees <see cref="Requested"/> and parks in <see cref="Park"/> until
/// <see cref="Resume"/> or the end of the VM. A vCPU parked here is outside KVM_RUN with any I/O exit completed: its
/// registers and the devices it touched are consistent, which is what saving a VM needs.
/// </summary>
public sealed class PauseControl
{
    private readonly object _lock = new();
    private volatile bool _requested;
    private int _inLoop, _parked;

    /// <param name="startPaused">The vCPUs park before their first KVM_RUN (a VM built paused).</param>
    public PauseControl(bool startPaused = false) => _requested = startPaused;

    /// <summary>A pause is in force: vCPU threads must park.</summary>
    public bool Requested => _requested;

    /// <summary>vCPU threads inside their run loop, and how many of them are parked.</summary>
    public (int InLoop, int Parked) Counts { get { lock (_lock) return (_inLoop, _parked); } }

    /// <summary>A vCPU thread entered its loop.</summary>
    internal void Enter() { lock (_lock) { _inLoop++; Monitor.PulseAll(_lock); } }

    /// <summary>A vCPU thread left its loop for good (the VM is done): it no longer counts toward "all parked".</summary>
    internal void Leave() { lock (_lock) { _inLoop--; Monitor.PulseAll(_lock); } }

    /// <summary>Called by a vCPU thread that saw <see cref="Requested"/>: waits until resumed or <paramref name="finished"/>.</summary>
    internal void Park(Func<bool> finished)
    {
        lock (_lock)
        {
            _parked++;
            Monitor.PulseAll(_lock);
            while (_requested && !finished()) Monitor.Wait(_lock, 100);
            _parked--;
        }
    }

    /// <summary>
    /// Asks every vCPU to stop; <paramref name="kick"/> makes them leave KVM_RUN. Returns true once every vCPU thread
    /// still in its loop is parked, false if that did not happen within <paramref name="timeout"/> (the pause stays
    /// requested; <see cref="Resume"/> cancels it).
    /// </summary>
    public bool Pause(Action kick, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(kick);
        lock (_lock) _requested = true;
        kick();
        var deadline = DateTime.UtcNow + timeout;
        lock (_lock)
        {
            while (_parked < _inLoop)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return false;
                Monitor.Wait(_lock, left < TimeSpan.FromMilliseconds(50) ? left : TimeSpan.FromMilliseconds(50));
                if (_parked < _inLoop) kick(); // a thread that was between its check and KVM_RUN gets another kick
            }
            return true;
        }
    }

    /// <summary>Lets parked vCPUs run again.</summary>
    public void Resume()
    {
        lock (_lock)
        {
            _requested = false;
            Monitor.PulseAll(_lock);
        }
    }
}
