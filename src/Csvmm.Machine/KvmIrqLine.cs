using Csvmm.Devices;
using Csvmm.Kvm;

namespace Csvmm.Machine;

/// <summary>An interrupt line into KVM's in-kernel PIC/IOAPIC (KVM_IRQ_LINE on one GSI).</summary>
public sealed class KvmIrqLine : IIrqLine
{
    private readonly KvmVm _vm;
    private readonly uint _gsi;
    /// <summary>KVM_IRQ_LINE calls that failed (the VM keeps running; a device may lose an interrupt).</summary>
    public long Failures;

    public KvmIrqLine(KvmVm vm, uint gsi)
    {
        _vm = vm;
        _gsi = gsi;
    }

    public uint Gsi => _gsi;

    public void Set(bool level)
    {
        if (!_vm.SetIrqLine(_gsi, level)) Interlocked.Increment(ref Failures);
    }
}
