using Csvmm.Acpi;
using Csvmm.Boot;
using Csvmm.Devices;
using Csvmm.Devices.FwCfg;
using Csvmm.Devices.Legacy;
using Csvmm.Devices.Pci;
using Csvmm.Devices.State;
using Csvmm.Ide;
using Csvmm.Virtio;
using Csvmm.Kvm;

using Csvmm.Machine.X86;

namespace Csvmm.Machine;

/// <summary>
/// csvmm's PC platform: which devices exist, at which ports and interrupt lines (all from <see cref="Layout"/>),
/// and how the guest is loaded (kernel + ACPI tables, or firmware at the reset vector).
/// </summary>
public sealed class Platform : IDisposable
{
    private readonly VirtualMachine _vm;
    private readonly ISerialOutput _serialOut;
    private Serial16550? _com1;
    private AcpiPm? _pm;
    private PciBarRouter? _barRouter;
    private PiixIde? _ide;
    private GsiRoutes? _gsiRoutes;
    private Doorbells? _doorbells;
    private readonly List<VirtioPciDevice> _virtio = [];
    private readonly List<IDisposable> _owned = [];

    internal Platform(VirtualMachine vm, ISerialOutput serialOut)
    {
        _vm = vm;
        _serialOut = serialOut;
    }

    public Serial16550? Com1 => _com1;

    /// <summary>
    /// The devices whose guest-visible state this machine saves and loads, by the ids the platform gives them
    /// (the in-kernel irqchip, PIT and vCPUs are KVM's, saved apart). Filled by <see cref="CreateDevices"/>.
    /// </summary>
    public DeviceStateSet DeviceStates { get; } = new();
    public PciBus PciBus { get; } = new();
    /// <summary>Decodes the PCI BARs (created with the devices).</summary>
    public PciBarRouter? BarRouter => _barRouter;

    /// <summary>
    /// Loads saved device states (all or nothing, see <see cref="DeviceStateSet.LoadAll"/>), then makes the BAR router
    /// decode where the loaded configuration spaces say. Call with the vCPUs stopped.
    /// </summary>
    public void LoadDeviceStates(ReadOnlySpan<byte> blob)
    {
        DeviceStates.LoadAll(blob);
        _barRouter?.Refresh();
    }

    /// <summary>Loads the kernel (with ACPI tables, boot GDT and page tables) or the firmware into guest memory.</summary>
    internal BootPlan LoadGuest()
    {
        var cfg = _vm.Config;
        var memory = _vm.Memory;
        var images = _vm.Images;
        if (images.Firmware is { } image)
        {
            memory.AddRegion(image.HighRom.Start, image.HighRom.Size, "bios", readOnly: true);
            return image.CopyTo(memory);
        }
        if (images.Kernel is { } kernel)
        {
            var acpi = AcpiTables.Write(memory, Layout.AcpiStart, Layout.AcpiMaxSize, AcpiConfigFor(cfg.Cpus));
            BootGdt.Write(memory);
            BootPageTables.Write(memory);
            return KernelImage.Load(memory, kernel, new BootOptions { CommandLine = cfg.Append, Initrd = images.Initrd, RsdpAddress = acpi.Rsdp });
        }
        throw new BootException("nothing to boot: no kernel and no firmware");
    }

    /// <summary>Presses the ACPI power button (PM1 status bit, SCI when the guest enabled it). Any thread.</summary>
    public void PressPowerButton() => _pm?.PressPowerButton();

    /// <summary>The ACPI description of this platform.</summary>
    public static AcpiConfig AcpiConfigFor(int cpus) => new()
    {
        CpuCount = cpus,
        IoApicAddress = Layout.IoApic,
        IoApicId = 0, // what KVM's IOAPIC ID register reads (QEMU's MADT says the same)
        LocalApicAddress = Layout.LocalApic,
        Pm1aEventBlock = Layout.AcpiPm1aEvent,
        Pm1aControlBlock = Layout.AcpiPm1aControl,
        PmTimerBlock = Layout.AcpiPmTimer,
        SciIrq = Layout.AcpiSciIrq,
        ResetPort = Layout.ResetControl,
        ResetValue = 0x06,
        S5SleepType = Layout.SlpTypS5,
        Com1 = new LegacySerialPort(Layout.Com1, Layout.Com1Irq),
        PciRoot = new PciRootConfig
        {
            MmioStart = Layout.PciMmioStart,
            MmioEnd = Layout.PciMmioEnd,
            SlotCount = PciRootConfig.MaxSlots,
            IoWindows = [new(0x0000, 0x0CF7), new(Layout.PciIoStart, Layout.PciIoEnd)],
        },
    };

    /// <summary>Creates the legacy devices and the PCI host bridge and registers them on the VM's buses.</summary>
    internal void CreateDevices()
    {
        var pio = _vm.PortBus;
        var control = _vm.Control;
        IIrqLine Irq(int gsi) => new KvmIrqLine(_vm.Vm, (uint)gsi);

        _com1 = new Serial16550(Irq(Layout.Com1Irq), _serialOut);
        pio.Register(Layout.Com1, 8, _com1, "COM1 16550A");

        var i8042 = new I8042(control, Irq(1), Irq(12));
        pio.Register(Layout.I8042Data, 1, i8042.DataPort, "i8042 data");
        pio.Register(Layout.I8042Command, 1, i8042.CommandPort, "i8042 status/command");
        DeviceStates.Add("com1", _com1);
        DeviceStates.Add("i8042", i8042);

        var cmos = new CmosRtc(() => DateTimeOffset.UtcNow, _vm.Memory.RamSize, _vm.Config.Cpus, Irq(8));
        pio.Register(Layout.CmosIndex, 2, cmos, "CMOS RTC");
        DeviceStates.Add("cmos", cmos);

        PciBus.Add(0, 0, new PciHostBridge());
        PciBus.Add(1, 0, new Piix3IsaBridge());
        pio.Register(Layout.PciConfigAddress, 8, new PciConfigIo(PciBus, control), "PCI config mechanism #1");
        _barRouter = new PciBarRouter(PciBus, Layout.PciMmioStart.Value, Layout.PciMmioEnd.Value, Layout.PciIoStart, Layout.PciIoEnd);
        _vm.MmioBus.Register(Layout.PciMmioStart.Value, _barRouter.MmioWindowLength, _barRouter.MmioWindow, "PCI MMIO BARs");
        pio.Register(Layout.PciIoStart, _barRouter.IoWindowLength, _barRouter.IoWindow, "PCI I/O BARs");
        CreateIde(Irq);
        CreateVirtioDisks();

        var pm = _pm = new AcpiPm(control, Irq(Layout.AcpiSciIrq), Layout.SlpTypS5,
            System.Diagnostics.Stopwatch.GetTimestamp, System.Diagnostics.Stopwatch.Frequency);
        pio.Register(Layout.AcpiPm1aEvent, 4, pm.EventBlock, "ACPI PM1a event");
        pio.Register(Layout.AcpiPm1aControl, 2, pm.ControlBlock, "ACPI PM1a control");
        pio.Register(Layout.AcpiPmTimer, 4, pm.Timer, "ACPI PM timer");
        DeviceStates.Add("acpi-pm", pm);

        pio.Register(0x80, 1, new PortSink(0xFF), "POST code");
        pio.Register(0xED, 1, new PortSink(0xFF), "delay port");
        pio.Register(0x2F8, 8, new PortSink(0xFF), "COM2 (absent)");
        pio.Register(0x3E8, 8, new PortSink(0xFF), "COM3 (absent)");
        pio.Register(0x2E8, 8, new PortSink(0xFF), "COM4 (absent)");
        // The firmware's debug log has its own sink: on COM1 it would interleave, byte by byte, with SeaBIOS's serial
        // console printing the same text.
        if (_vm.Config.FirmwareLog is { } firmwareLog) pio.Register(0x402, 1, new FirmwareDebugPort(firmwareLog), "firmware debug port");
        else pio.Register(0x402, 1, new PortSink(0xFF), "firmware debug port (absent)");
        if (_vm.Images.Firmware is not null) CreateFwCfg();
        PciBus.Freeze();
        // Firmware assigns BARs itself; a directly booted kernel finds them assigned, as on Firecracker or Cloud Hypervisor.
        _barRouter.AssignAll();
        _ide?.EnableLegacyDecode();
        RegisterDoorbells();
        foreach (var (device, function, value, _) in PciBus.Functions)
            DeviceStates.Add($"pci-{device:x2}.{function}", value.Config);
        // After the configuration spaces: a loaded transport drives INTx from the loaded command register.
        foreach (var (device, function, value, _) in PciBus.Functions)
            if (value is VirtioPciDevice v) DeviceStates.Add($"virtio-{device:x2}.{function}", v);
    }

    /// <summary>
    /// Stops the devices that work on their own (virtio I/O threads), once the requests they have taken are complete:
    /// with the vCPUs stopped too, guest RAM and <see cref="DeviceStates"/> are then the whole machine. IDE channels
    /// need nothing here: they only move when a vCPU writes a command, and wait for a request in flight when saved.
    /// </summary>
    public void QuiesceDevices()
    {
        foreach (var f in _virtio) f.Quiesce();
    }

    /// <summary>Lets the devices stopped by <see cref="QuiesceDevices"/> work again.</summary>
    public void ResumeDevices()
    {
        foreach (var f in _virtio) f.Resume();
    }

    /// <summary>
    /// QEMU's fw_cfg at 0x510 (with DMA), for firmware only: a directly booted kernel gets its tables in guest
    /// memory and has no use for it. Its content (<see cref="FirmwareConfig"/>) follows from the configuration.
    /// </summary>
    private void CreateFwCfg()
    {
        var cfg = _vm.Config;
        var disks = new List<FirmwareConfig.BootDisk>();
        int ide = 0, virtio = 0;
        foreach (var d in cfg.AttachedDisks)
            disks.Add(new(d.Interface, d.Interface == DiskInterface.Ide ? ide++ : virtio++));
        var content = FirmwareConfig.Build(_vm.Memory, cfg.Cpus, disks, serialConsole: true);
        var fwcfg = new FwCfgDevice(content, new GuestMemoryDma(_vm.Memory));
        _vm.PortBus.Register(FirmwareConfig.Port, FwCfgDevice.PortLength, fwcfg, "fw_cfg");
        DeviceStates.Add("fw-cfg", fwcfg);
    }

    /// <summary>
    /// The PIIX3 IDE function at 00:01.1 with the if=ide disks in QEMU's order (primary master, primary slave,
    /// secondary master, secondary slave), legacy ports and IRQs 14/15, bus-master DMA into guest RAM. Absent when
    /// no disk is on IDE: an empty controller would only cost the guest a probe.
    /// </summary>
    private void CreateIde(Func<int, IIrqLine> irq)
    {
        var disks = _vm.Config.AttachedDisks.Where(d => d.Interface == DiskInterface.Ide).ToList();
        if (disks.Count == 0) return;
        if (disks.Count > 4) throw new DeviceException($"{disks.Count} IDE disks: the controller has 4 positions");
        var drives = disks.Select((d, i) => new IdeDrive(d.Backend, serial: $"CSVMM-IDE{i}")).ToArray();
        IdeDrive? Drive(int i) => i < drives.Length ? drives[i] : null;
        var primary = new IdeChannel(irq(Layout.IdePrimaryIrq), Drive(0), Drive(1), _vm.Memory, ioThread: true);
        _owned.Add(primary);
        DeviceStates.Add("ide-primary", primary);
        var secondary = drives.Length > 2 ? new IdeChannel(irq(Layout.IdeSecondaryIrq), Drive(2), Drive(3), _vm.Memory, ioThread: true) : null;
        if (secondary is not null)
        {
            _owned.Add(secondary);
            DeviceStates.Add("ide-secondary", secondary);
        }
        _ide = new PiixIde(primary, secondary);
        PciBus.Add(Layout.IdePciDevice, Layout.IdePciFunction, _ide, "PIIX3 IDE");
        var pio = _vm.PortBus;
        pio.Register(Layout.IdePrimaryCommand, PiixIde.CommandBlockLength, primary.CommandBlock, "IDE primary command block");
        pio.Register(Layout.IdePrimaryControl, PiixIde.ControlBlockLength, primary.ControlBlock, "IDE primary control block");
        if (secondary is not null)
        {
            pio.Register(Layout.IdeSecondaryCommand, PiixIde.CommandBlockLength, secondary.CommandBlock, "IDE secondary command block");
            pio.Register(Layout.IdeSecondaryControl, PiixIde.ControlBlockLength, secondary.ControlBlock, "IDE secondary control block");
        }
    }

    /// <summary>
    /// One virtio-blk PCI function per if=virtio disk, from slot 2 up: MSI-X through irqfds (one GSI per vector, routed
    /// when the guest programs the table), INTx on the slot's _PRT GSI as the fallback, queue doorbells as
    /// ioeventfds that follow the BAR, requests served on each device's I/O thread.
    /// </summary>
    private void CreateVirtioDisks()
    {
        var disks = _vm.Config.AttachedDisks.Where(d => d.Interface == DiskInterface.Virtio).ToList();
        if (disks.Count == 0) return;
        if (Layout.FirstVirtioPciDevice + disks.Count > PciBus.MaxDevices)
            throw new DeviceException($"{disks.Count} virtio disks do not fit on the PCI bus");
        _gsiRoutes = new GsiRoutes(_vm.Vm);
        _doorbells = new Doorbells(_vm.Vm, _barRouter!, _vm.Log);
        for (int i = 0; i < disks.Count; i++)
        {
            int slot = Layout.FirstVirtioPciDevice + i;
            var blk = new VirtioBlk(disks[i].Backend, new VirtioBlkOptions { Serial = $"csvmm-vd{(char)('a' + i % 26)}{(i >= 26 ? (i / 26).ToString() : "")}" });
            var vectors = new KvmMsiVectors(_vm.Vm, _gsiRoutes, VirtioPciDevice.MsixVectorsFor(blk));
            _owned.Add(vectors);
            var intx = new KvmIrqLine(_vm.Vm, PciRootConfig.DefaultGsi(slot, 0));
            var function = new VirtioPciDevice(blk, _vm.Memory, intx, vectors);
            _owned.Insert(0, function); // disposed first (it owns blk): stops the I/O thread before its vectors go
            PciBus.Add(slot, 0, function, $"virtio-blk {disks[i].Name}");
            _virtio.Add(function);
            if (function.Msix is { } msix) DeviceStates.Add($"msix-{slot:x2}.0", msix);
        }
    }

    /// <summary>Registers the virtio doorbells as ioeventfds once the BARs have addresses.</summary>
    private void RegisterDoorbells()
    {
        foreach (var f in _virtio)
            _doorbells!.Add(f.Doorbells.Select(d => new Doorbell(f, d.Bar, d.Offset, d.Event)));
    }

    /// <summary>Sets vCPU 0's registers for the boot plan. The APs wait for INIT/SIPI from the guest.</summary>
    internal static void SetBootRegisters(KvmVcpu vcpu, BootPlan plan)
    {
        if (plan.Mode == EntryMode.RealModeReset) return; // KVM's reset state is already F000:FFF0
        var regs = vcpu.GetRegs();
        var sregs = vcpu.GetSregs();
        if (plan.Mode == EntryMode.Linux64)
            VcpuSetup.Linux64(ref regs, ref sregs, plan.Entry.Value, plan.BootParameters.Value,
                Layout.BootGdt.Value, BootGdt.GdtLimit, Layout.BootIdt.Value, BootPageTables.Cr3.Value,
                BootGdt.Code64Descriptor, BootGdt.Code64Selector, BootGdt.DataDescriptor, BootGdt.DataSelector);
        else
            VcpuSetup.Pvh32(ref regs, ref sregs, plan.Entry.Value, plan.BootParameters.Value,
                Layout.BootGdt.Value, BootGdt.GdtLimit, Layout.BootIdt.Value,
                BootGdt.Code32Descriptor, BootGdt.Code32Selector, BootGdt.DataDescriptor, BootGdt.DataSelector);
        vcpu.SetSregs(sregs);
        vcpu.SetRegs(regs);
    }

    /// <summary>Host input for COM1; returns how many bytes the UART accepted.</summary>
    public int SerialInput(ReadOnlySpan<byte> data) => _com1?.EnqueueInput(data) ?? 0;

    public void Flush() => (_serialOut as IFlushable)?.Flush();

    /// <summary>One debug line per block device with its counters (after the VM stopped).</summary>
    internal void LogDeviceSummary(Serilog.ILogger log)
    {
        foreach (var d in _vm.Config.AttachedDisks)
            log.Debug("disk {Name} ({Interface}): {Counters}", d.Name, d.Interface, d.Backend.Counters);
        foreach (var f in _virtio)
        {
            if (f.Device is not VirtioBlk blk) continue;
            var c = blk.Counters;
            log.Debug("virtio-blk {Slot}: {Requests} requests, {Read} B read, {Written} B written, {Flushes} flushes, {Errors} I/O errors; "
                + "MSI-X {Msix} ({Delivered} delivered), {Slow} doorbell exits, {Ioeventfds} ioeventfds, {Routes} MSI routes",
                PciBus.Functions.First(x => ReferenceEquals(x.Value, f)).Device, c.Requests, c.ReadBytes, c.WrittenBytes, c.Flushes,
                c.IoErrors, f.Msix?.Enabled == true ? "on" : "off", f.Msix?.Delivered ?? 0, f.SlowNotifications,
                _doorbells?.ActiveCount ?? 0, _gsiRoutes?.MsiRouteCount ?? 0);
        }
    }

    /// <summary>Stops the devices' I/O threads and releases their eventfds (doorbells first, then functions, vectors).</summary>
    public void Dispose()
    {
        _doorbells?.Dispose();
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}

/// <summary>A sink that can be flushed (host serial output).</summary>
public interface IFlushable
{
    void Flush();
}
