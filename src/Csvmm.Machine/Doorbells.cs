using Csvmm.Devices.Pci;
using Csvmm.Kvm;
using Serilog;

using Csvmm.Sys;

namespace Csvmm.Machine;

/// <summary>A register in a BAR whose guest writes should signal an eventfd inside KVM (KVM_IOEVENTFD), never exiting.</summary>
/// <param name="Function">The function owning the BAR.</param>
/// <param name="Bar">BAR index.</param>
/// <param name="Offset">Offset of the register in the BAR.</param>
/// <param name="Event">The eventfd KVM signals; the device's I/O thread waits on it.</param>
public sealed record Doorbell(IPciBarFunction Function, int Bar, ulong Offset, EventFdHandle Event);

/// <summary>
/// Keeps KVM's ioeventfds where the doorbells are: registered when their BAR decodes, moved when the guest moves the
/// BAR (<see cref="PciBarRouter.Remapped"/>), dropped when it stops decoding. Until registered, a doorbell write
/// exits to userspace and the device's own handler signals the same eventfd, so nothing is lost in between.
/// </summary>
public sealed class Doorbells : IDisposable
{
    private readonly KvmVm _vm;
    private readonly PciBarRouter _router;
    private readonly ILogger _log;
    private readonly List<Doorbell> _doorbells = [];
    private readonly Dictionary<Doorbell, (ulong Address, bool Io)> _active = [];
    private readonly Lock _lock = new();

    public Doorbells(KvmVm vm, PciBarRouter router, ILogger log)
    {
        _vm = vm;
        _router = router;
        _log = log;
        router.Remapped += Update;
    }

    /// <summary>Doorbells with an ioeventfd right now (diagnostics and tests).</summary>
    public int ActiveCount { get { lock (_lock) return _active.Count; } }

    /// <summary>Adds doorbells; they get ioeventfds at the next <see cref="Update"/> (immediately if their BAR decodes).</summary>
    public void Add(IEnumerable<Doorbell> doorbells)
    {
        lock (_lock) _doorbells.AddRange(doorbells);
        Update(_router.Mapped);
    }

    private void Update(IReadOnlyList<MappedBar> mapped)
    {
        lock (_lock)
        {
            foreach (var d in _doorbells)
            {
                (ulong Address, bool Io)? want = null;
                if (_router.TryGetMapping(d.Function, d.Bar, out var m) && d.Offset < m.Size)
                    want = (m.Base + d.Offset, m.IsIo);
                bool has = _active.TryGetValue(d, out var current);
                if (has && want == current) continue;
                if (has)
                {
                    Unregister(d, current.Address, current.Io);
                    _active.Remove(d);
                }
                if (want is { } w)
                {
                    try
                    {
                        // Length 0 (MMIO) matches a write of any width; a port doorbell is a 16-bit write.
                        _vm.RegisterIoeventfd(d.Event, w.Address, w.Io ? 2u : 0u, w.Io);
                        _active[d] = w;
                    }
                    catch (KvmException e)
                    {
                        // The slow path (an MMIO exit to the device) still works.
                        _log.Debug("ioeventfd at 0x{Address:x} not registered: {Error}", w.Address, e.Message);
                    }
                }
            }
        }
    }

    private void Unregister(Doorbell d, ulong address, bool io)
    {
        try { _vm.RegisterIoeventfd(d.Event, address, io ? 2u : 0u, io, deassign: true); }
        catch (KvmException e) { _log.Debug("ioeventfd at 0x{Address:x} not removed: {Error}", address, e.Message); }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _router.Remapped -= Update;
            foreach (var (d, (address, io)) in _active) Unregister(d, address, io);
            _active.Clear();
        }
    }
}
