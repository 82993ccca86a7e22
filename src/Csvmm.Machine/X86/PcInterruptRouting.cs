using Csvmm.Kvm;

namespace Csvmm.Machine.X86;

/// <summary>
/// How the PC wires interrupt lines to its interrupt controllers, as QEMU's i440FX machine does: GSIs 0-15 reach the
/// 8259 pair (except 2, the cascade), GSIs 0-23 reach the IOAPIC, and GSI 0 (the PIT) is wired to IOAPIC pin 2,
/// matching the MADT's IRQ0 → GSI 2 override. Platform knowledge, so it lives here and not in the KVM binding,
/// which only carries the table to KVM_SET_GSI_ROUTING.
/// </summary>
public static class PcInterruptRouting
{
    /// <summary>Lines of the 8259 pair and pins of the IOAPIC.</summary>
    public const int PicLines = 16, IoApicPins = 24;

    /// <summary>The fixed routes, PIC entries first.</summary>
    public static KvmIrqRoutingEntry[] Entries()
    {
        var list = new List<KvmIrqRoutingEntry>(PicLines - 1 + IoApicPins - 1);
        for (uint i = 0; i < PicLines; i++)
        {
            if (i == 2) continue;
            list.Add(i < 8
                ? KvmIrqRoutingEntry.Irqchip(i, KvmIrqRoutingEntry.IrqchipPicMaster, i)
                : KvmIrqRoutingEntry.Irqchip(i, KvmIrqRoutingEntry.IrqchipPicSlave, i - 8));
        }
        for (uint i = 0; i < IoApicPins; i++)
        {
            if (i == 2) continue;
            list.Add(KvmIrqRoutingEntry.Irqchip(i, KvmIrqRoutingEntry.IrqchipIoapic, i == 0 ? 2 : i));
        }
        return list.ToArray();
    }
}
