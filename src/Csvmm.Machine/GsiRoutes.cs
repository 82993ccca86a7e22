using Csvmm.Devices.Pci;
using Csvmm.Kvm;

using Csvmm.Sys;

namespace Csvmm.Machine;

/// <summary>
/// The VM's whole GSI routing table: the PC's fixed PIC/IOAPIC routes (<see cref="X86.PcInterruptRouting"/>) plus one MSI
/// route per MSI-X vector that the guest has programmed. KVM_SET_GSI_ROUTING replaces the table, so every change
/// rewrites all of it. GSIs for MSI vectors are handed out above the IOAPIC's 24 pins.
/// </summary>
public sealed class GsiRoutes
{
    /// <summary>First GSI handed out for MSI vectors (the IOAPIC has 24 pins).</summary>
    public const uint FirstMsiGsi = X86.PcInterruptRouting.IoApicPins;

    private readonly KvmVm _vm;
    private readonly KvmIrqRoutingEntry[] _fixed;
    private readonly uint _limit;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<uint, MsiMessage> _msi = [];
    private uint _nextGsi = FirstMsiGsi;

    public GsiRoutes(KvmVm vm)
    {
        _vm = vm;
        _fixed = X86.PcInterruptRouting.Entries();
        int max = vm.CheckExtension(KvmCap.IrqRouting);
        _limit = max > 0 ? (uint)max : 1024;
    }

    /// <summary>Routes committed to KVM so far (diagnostics and tests).</summary>
    public int MsiRouteCount { get { lock (_lock) return _msi.Count; } }

    /// <summary>Reserves <paramref name="count"/> consecutive GSIs for MSI vectors.</summary>
    public uint Allocate(int count)
    {
        lock (_lock)
        {
            uint first = _nextGsi;
            if ((ulong)first + (ulong)count > _limit)
                throw new KvmException($"out of GSIs for MSI-X vectors ({_limit} routes supported)");
            _nextGsi += (uint)count;
            return first;
        }
    }

    /// <summary>Routes <paramref name="gsi"/> to <paramref name="message"/> (null: no route) and commits the table.</summary>
    public void SetMsi(uint gsi, MsiMessage? message)
    {
        lock (_lock)
        {
            if (message is { } m)
            {
                if (_msi.TryGetValue(gsi, out var old) && old == m) return;
                _msi[gsi] = m;
            }
            else if (!_msi.Remove(gsi)) return;
            Commit();
        }
    }

    private void Commit()
    {
        var entries = new KvmIrqRoutingEntry[_fixed.Length + _msi.Count];
        _fixed.CopyTo(entries, 0);
        int i = _fixed.Length;
        foreach (var (gsi, m) in _msi) entries[i++] = KvmIrqRoutingEntry.Msi(gsi, m.Address, m.Data);
        _vm.SetGsiRouting(entries);
    }
}

/// <summary>
/// One PCI function's MSI-X vectors on KVM: a GSI and an irqfd (eventfd) per vector. <see cref="Trigger"/> is one
/// eventfd write (no exit, no allocation: the I/O thread calls it); <see cref="SetRoute"/> rewrites the VM's GSI
/// routing table (rare: when the guest programs the MSI-X table).
/// </summary>
public sealed class KvmMsiVectors : IMsiVectors, IDisposable
{
    private readonly KvmVm _vm;
    private readonly GsiRoutes _routes;
    private readonly uint _firstGsi;
    private readonly EventFdHandle[] _events;
    private readonly bool[] _registered;

    public KvmMsiVectors(KvmVm vm, GsiRoutes routes, int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _vm = vm;
        _routes = routes;
        _firstGsi = routes.Allocate(count);
        _events = new EventFdHandle[count];
        _registered = new bool[count];
        try
        {
            for (int i = 0; i < count; i++)
            {
                _events[i] = EventFdHandle.Create();
                vm.RegisterIrqfd(_events[i], _firstGsi + (uint)i);
                _registered[i] = true;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Count => _events.Length;

    /// <summary>The GSI of vector <paramref name="vector"/>.</summary>
    public uint GsiOf(int vector) => _firstGsi + (uint)vector;

    public void SetRoute(int vector, MsiMessage? message)
    {
        if ((uint)vector >= (uint)_events.Length) return;
        _routes.SetMsi(_firstGsi + (uint)vector, message);
    }

    public void Trigger(int vector)
    {
        if ((uint)vector < (uint)_events.Length) _events[vector].Signal();
    }

    public void Dispose()
    {
        for (int i = 0; i < _events.Length; i++)
        {
            if (_events[i] is null) continue;
            if (_registered[i])
            {
                try { _vm.RegisterIrqfd(_events[i], _firstGsi + (uint)i, deassign: true); }
                catch (KvmException) { }
                _registered[i] = false;
            }
            _events[i].Dispose();
        }
    }
}
