using Csvmm.Kvm;
using Csvmm.Machine.X86;

namespace Csvmm.Machine.Tests;

/// <summary>The PC's fixed GSI routes, checked entry by entry (no KVM needed: it is a table).</summary>
public sealed class PcInterruptRoutingTests
{
    private static unsafe (uint Gsi, uint Chip, uint Pin)[] Routes() =>
        PcInterruptRouting.Entries().Select(e =>
        {
            Assert.Equal(KvmIrqRoutingEntry.TypeIrqchip, e.type);
            return (e.gsi, e.u[0], e.u[1]);
        }).ToArray();

    [Fact]
    public void PicLinesReachThe8259PairExceptTheCascade()
    {
        var pic = Routes().Where(r => r.Chip != KvmIrqRoutingEntry.IrqchipIoapic).ToArray();
        Assert.Equal(15, pic.Length);
        Assert.DoesNotContain(pic, r => r.Gsi == 2);
        foreach (var r in pic)
        {
            Assert.Equal(r.Gsi < 8 ? KvmIrqRoutingEntry.IrqchipPicMaster : KvmIrqRoutingEntry.IrqchipPicSlave, r.Chip);
            Assert.Equal(r.Gsi % 8, r.Pin);
        }
    }

    [Fact]
    public void IoApicPinsFollowTheMadtOverrideOfIrq0ToPin2()
    {
        var ioapic = Routes().Where(r => r.Chip == KvmIrqRoutingEntry.IrqchipIoapic).ToDictionary(r => r.Gsi, r => r.Pin);
        Assert.Equal(23, ioapic.Count);
        Assert.Equal(2u, ioapic[0]);
        Assert.False(ioapic.ContainsKey(2));
        for (uint gsi = 1; gsi < PcInterruptRouting.IoApicPins; gsi++)
            if (gsi != 2) Assert.Equal(gsi, ioapic[gsi]);
        Assert.Equal((uint)PcInterruptRouting.IoApicPins, GsiRoutes.FirstMsiGsi);
    }
}
