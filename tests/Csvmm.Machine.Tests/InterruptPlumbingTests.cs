using Csvmm.Devices;
using Csvmm.Devices.Pci;
using Csvmm.Kvm;
using Serilog;

using Csvmm.Sys;

using Csvmm.TestSupport;

namespace Csvmm.Machine.Tests;

/// <summary>
/// The machine's KVM plumbing for PCI devices, against the real /dev/kvm: MSI routes through KVM_SET_GSI_ROUTING with
/// irqfds, and ioeventfd doorbells that follow a BAR as the guest moves it.
/// </summary>
public sealed class InterruptPlumbingTests : IDisposable
{
    private readonly Kvm.Kvm _kvm;
    private readonly KvmVm _vm;

    public InterruptPlumbingTests()
    {
        HostRequirements.RequireKvm("these tests program KVM's interrupt routing");
        _kvm = Kvm.Kvm.Open("/dev/kvm");
        _vm = _kvm.CreateVm();
        _vm.CreateIrqchip();
        _vm.SetGsiRouting(Csvmm.Machine.X86.PcInterruptRouting.Entries());
    }

    public void Dispose()
    {
        _vm.Dispose();
        _kvm.Dispose();
    }

    [Fact]
    public void MsiVectorsGetGsisAboveTheIoapicAndRoutesCommitToKvm()
    {
        var routes = new GsiRoutes(_vm);
        using var a = new KvmMsiVectors(_vm, routes, 2);
        using var b = new KvmMsiVectors(_vm, routes, 3);
        Assert.Equal(GsiRoutes.FirstMsiGsi, a.GsiOf(0));
        Assert.Equal(GsiRoutes.FirstMsiGsi + 2, b.GsiOf(0));

        a.SetRoute(0, new MsiMessage(0xFEE0_0000, 0x4021));
        b.SetRoute(2, new MsiMessage(0xFEE0_1000, 0x4031));
        Assert.Equal(2, routes.MsiRouteCount);
        a.SetRoute(0, new MsiMessage(0xFEE0_0000, 0x4021)); // unchanged: no rewrite needed
        a.SetRoute(0, null);
        Assert.Equal(1, routes.MsiRouteCount);
        a.SetRoute(7, new MsiMessage(0xFEE0_0000, 1));       // no such vector: ignored
        Assert.Equal(1, routes.MsiRouteCount);
        a.Trigger(1);                                       // an unrouted vector's irqfd fires into nothing
        a.Trigger(99);
    }

    [Fact]
    public void DoorbellsFollowTheBar()
    {
        var bus = new PciBus();
        var function = new OneBarFunction();
        bus.Add(2, 0, function);
        var router = new PciBarRouter(bus, 0xC000_0000, 0xFEC0_0000, 0x1000, 0xFFFF);
        using var doorbells = new Doorbells(_vm, router, new LoggerConfiguration().CreateLogger());
        using var ev = EventFdHandle.Create();
        doorbells.Add([new Doorbell(function, 0, 0x3000, ev)]);
        Assert.Equal(0, doorbells.ActiveCount);   // no address yet

        router.AssignAll();
        Assert.Equal(1, doorbells.ActiveCount);   // registered at the BAR's address

        Assert.Throws<KvmException>(() => _vm.RegisterIoeventfd(ev, 0xC000_3000, 0, pio: false)); // KVM: EEXIST, it is there

        bus.WriteConfig(2, 0, 0x10, [0x00, 0x00, 0x00, 0xE0]);  // the guest moves the BAR to 0xE0000000
        Assert.Equal(1, doorbells.ActiveCount);
        _vm.RegisterIoeventfd(ev, 0xC000_3000, 0, pio: false);  // the old place is free again ...
        _vm.RegisterIoeventfd(ev, 0xC000_3000, 0, pio: false, deassign: true);
        Assert.Throws<KvmException>(() => _vm.RegisterIoeventfd(ev, 0xE000_3000, 0, pio: false)); // ... and the new one taken
        bus.WriteConfig(2, 0, 0x04, [0x00, 0x00]);               // decode off: dropped
        Assert.Equal(0, doorbells.ActiveCount);
        bus.WriteConfig(2, 0, 0x04, [0x02, 0x00]);               // on again
        Assert.Equal(1, doorbells.ActiveCount);
    }

    private sealed class OneBarFunction : IPciBarFunction
    {
        private readonly Sink _sink = new();

        public OneBarFunction()
        {
            Config = new PciConfigSpace(0x1AF4, 0x1042, 0x018000, 1);
            Config.AddMemoryBar(0, 0x8000);
        }

        public PciConfigSpace Config { get; }
        public IBusDevice? GetBarDevice(int bar) => bar == 0 ? _sink : null;
        public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);
        public void WriteConfig(int offset, ReadOnlySpan<byte> data) => Config.Write(offset, data);

        private sealed class Sink : IBusDevice
        {
            public void Read(ulong offset, Span<byte> data) => data.Clear();
            public void Write(ulong offset, ReadOnlySpan<byte> data) { }
        }
    }
}
