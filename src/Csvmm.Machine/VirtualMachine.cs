using Csvmm.Boot;
using Csvmm.Devices;
using Csvmm.Kvm;
using Csvmm.Memory;
using Serilog;

using Csvmm.Machine.X86;

namespace Csvmm.Machine;

/// <summary>
/// One booted VM: KVM VM + guest memory + platform devices + vCPU threads. <see cref="Create"/> builds it
/// completely (nothing runs yet); <see cref="Run"/> starts the vCPUs and returns when the VM is done.
/// A reset is handled by the caller building a fresh VirtualMachine (see <see cref="MachineRunner"/>).
/// </summary>
public sealed class VirtualMachine : IDisposable
{
    private readonly ILogger _log;
    private readonly List<IDisposable> _owned = [];
    private readonly List<VcpuThread> _vcpus = [];

    public MachineConfig Config { get; }
    /// <summary>What this VM boots from, read before KVM was opened.</summary>
    public BootImages Images { get; }
    public Kvm.Kvm Kvm { get; }
    public KvmVm Vm { get; }
    public GuestMemory Memory { get; }
    public PortIoBus PortBus { get; } = new();
    public MmioBus MmioBus { get; } = new();
    public RunControl Control { get; } = new();
    /// <summary>Stops the vCPUs at an exit boundary and resumes them (<see cref="PauseVcpus"/>, <see cref="ResumeVcpus"/>).</summary>
    public PauseControl Pause { get; private set; } = new();
    public Platform Platform { get; }
    public IReadOnlyList<VcpuThread> Vcpus => _vcpus;
    internal ILogger Log => _log;

    private VirtualMachine(MachineConfig config, BootImages images, Kvm.Kvm kvm, KvmVm vm, GuestMemory memory, ILogger log, ISerialOutput serialOut)
    {
        Config = config;
        Images = images;
        Kvm = kvm;
        Vm = vm;
        Memory = memory;
        _log = log;
        Platform = new Platform(this, serialOut);
    }

    /// <summary>Reads the boot files (<see cref="BootImages.Read"/>), then builds the whole machine. Throws KvmException, GuestMemoryException, BootException, DeviceException.</summary>
    public static VirtualMachine Create(MachineConfig config, ILogger log, ISerialOutput serialOut) =>
        Create(config, BootImages.Read(config), log, serialOut);

    /// <summary>Builds the whole machine from boot files already read. Throws KvmException, GuestMemoryException, BootException, DeviceException.</summary>
    public static VirtualMachine Create(MachineConfig config, BootImages images, ILogger log, ISerialOutput serialOut) =>
        Create(config, images, log, serialOut, startPaused: false);

    /// <summary>Builds the machine; with <paramref name="startPaused"/> its vCPUs park before their first KVM_RUN until <see cref="ResumeVcpus"/>.</summary>
    public static VirtualMachine Create(MachineConfig config, BootImages images, ILogger log, ISerialOutput serialOut, bool startPaused)
    {
        ArgumentNullException.ThrowIfNull(images);
        VcpuKick.Install();
        var kvm = Csvmm.Kvm.Kvm.Open(config.KvmDevice);
        KvmVm? vm = null;
        GuestMemory? memory = null;
        VirtualMachine? machine = null;
        try
        {
            kvm.RequireExtensions(Csvmm.Kvm.Kvm.RequiredCaps);
            int max = kvm.MaxVcpus;
            if (config.Cpus < 1 || config.Cpus > max)
                throw new KvmException($"--cpus {config.Cpus}: this host's KVM supports 1 to {max} vCPUs");
            vm = kvm.CreateVm();
            vm.SetTssAddr(Layout.TssAddress.Value);
            vm.SetIdentityMapAddr(Layout.IdentityMap.Value);
            vm.CreateIrqchip();
            vm.SetGsiRouting(X86.PcInterruptRouting.Entries());
            vm.CreatePit2();
            memory = new GuestMemory();
            machine = new VirtualMachine(config, images, kvm, vm, memory, log, serialOut);
            machine.Pause = new PauseControl(startPaused);
            machine.Build();
            return machine;
        }
        catch
        {
            if (machine is not null) machine.Dispose();
            else
            {
                memory?.Dispose();
                vm?.Dispose();
                kvm.Dispose();
            }
            throw;
        }
    }

    private void Build()
    {
        // RAM: below the 32-bit MMIO hole, and the rest above 4 GiB.
        ulong size = Config.MemoryBytes;
        ulong low = Math.Min(size, Layout.MmioHoleStart.Value);
        Memory.AddRegion(GuestAddress.Zero, low, "ram-low");
        if (size > low) Memory.AddRegion(Layout.FourGiB, size - low, "ram-high");

        BootPlan plan = Platform.LoadGuest();
        RegisterMemorySlots();
        Platform.CreateDevices();
        Config.ExtraDevices?.Invoke(this);
        PortBus.Freeze();
        MmioBus.Freeze();

        var supported = Kvm.GetSupportedCpuid();
        const ulong syncSets = KvmSyncRegs.Regs | KvmSyncRegs.Sregs;
        bool syncRegs = ((ulong)Math.Max(0, Kvm.CheckExtension(KvmCap.SyncRegs)) & syncSets) == syncSets;
        for (int i = 0; i < Config.Cpus; i++)
        {
            var vcpu = Vm.CreateVcpu(i);
            _owned.Add(vcpu);
            vcpu.SetCpuid(CpuidBuilder.ForVcpu(supported, i, Config.Cpus));
            SetBootMsrs(vcpu);
            vcpu.SetFpu(VcpuSetup.BootFpu());
            var lapic = vcpu.GetLapic();
            VcpuSetup.ConfigureLints(ref lapic);
            vcpu.SetLapic(lapic);
            if (i == 0) Platform.SetBootRegisters(vcpu, plan);
            _vcpus.Add(new VcpuThread(vcpu, new ExitDispatcher(PortBus, MmioBus), Control, Memory, Pause, syncRegs));
        }
        _log.Debug("VM built: {Cpus} vCPUs, {MemoryMiB} MiB, regions {Regions}",
            Config.Cpus, Config.MemoryBytes >> 20, string.Join(", ", Memory.Regions));
    }

    private bool _roSupported;

    /// <summary>KVM memory slot i is <see cref="GuestMemory.Regions"/>[i].</summary>
    private void RegisterMemorySlots(bool logDirty = false)
    {
        _roSupported = Vm.CheckExtension(KvmCap.ReadonlyMem) > 0;
        uint slot = 0;
        foreach (var r in Memory.Regions)
            Vm.SetUserMemoryRegion(slot++, r.Start.Value, r.Size, r.HostAddress, r.ReadOnly && _roSupported, logDirty && !r.ReadOnly);
    }

    /// <summary>
    /// Starts recording which guest pages change (a live migration): KVM's dirty log on every RAM slot for the guest's
    /// writes, and <see cref="GuestMemory.StartDirtyTracking"/> for the VMM's own. Call with the vCPUs stopped and the
    /// devices quiesced, so that no write begun before can land unrecorded.
    /// </summary>
    public DirtyPageLog StartDirtyLogging()
    {
        var log = Memory.StartDirtyTracking();
        RegisterMemorySlots(logDirty: true);
        return log;
    }

    /// <summary>Stops what <see cref="StartDirtyLogging"/> started.</summary>
    public void StopDirtyLogging()
    {
        RegisterMemorySlots(logDirty: false);
        Memory.StopDirtyTracking();
    }

    /// <summary>
    /// ORs into <paramref name="bitmap"/> the pages of region <paramref name="region"/> (an index into
    /// <see cref="GuestMemory.Regions"/>) the guest wrote since the last call (KVM_GET_DIRTY_LOG, which clears KVM's log).
    /// </summary>
    public void CollectGuestDirtyPages(int region, Span<ulong> bitmap, Span<ulong> scratch)
    {
        scratch.Clear();
        Vm.GetDirtyLog((uint)region, scratch);
        for (int i = 0; i < bitmap.Length; i++) bitmap[i] |= scratch[i];
    }

    /// <summary>
    /// Whether KVM's dirty log sees every guest write right now (the vCPUs stopped). On kvm_pvm (the emulating KVM,
    /// see bench/README.md "This host") writes made while a vCPU runs outside 64-bit paging mode — real mode, SeaBIOS,
    /// a boot loader — are emulated and not logged; a migration then sends all of RAM while the VM is stopped.
    /// </summary>
    public bool GuestDirtyLogIsComplete()
    {
        if (!HostKvmQuirks.DirtyLogMissesEmulatedModes) return true;
        foreach (var v in _vcpus)
        {
            var s = v.Vcpu.GetSregs();
            if ((s.efer & Boot.BootControlRegisters.EferLma) == 0 || (s.cr0 & Boot.BootControlRegisters.Cr0Paging) == 0) return false;
        }
        return true;
    }

    private void SetBootMsrs(KvmVcpu vcpu)
    {
        // One KVM_SET_MSRS for all of them; if this KVM refuses one, set them one by one and log the refused ones
        // (they are all optional for booting).
        var msrs = VcpuSetup.BootMsrs();
        try
        {
            vcpu.SetMsrs(msrs);
            return;
        }
        catch (KvmException) { }
        foreach (var msr in msrs)
        {
            try { vcpu.SetMsrs([msr]); }
            catch (KvmException e) { _log.Debug("boot MSR 0x{Msr:x} not set: {Error}", msr.index, e.Message); }
        }
    }

    /// <summary>Starts every vCPU and waits until the VM is done (or <paramref name="timeout"/>); stops all vCPUs before returning.</summary>
    /// <param name="started">Runs once every vCPU thread has started (their thread ids are known).</param>
    public VmOutcome Run(TimeSpan? timeout = null, Action? started = null)
    {
        foreach (var v in _vcpus) v.Start();
        started?.Invoke();
        if (!Control.Wait(timeout))
            Control.Finish(new VmOutcome(VmExitKind.Timeout, $"timeout after {timeout!.Value.TotalSeconds:0.#} s"));
        StopVcpus();
        Platform.Flush();
        if (_log.IsEnabled(Serilog.Events.LogEventLevel.Debug)) Platform.LogDeviceSummary(_log);
        return Control.Outcome!;
    }

    /// <summary>Stops every vCPU at an exit boundary; true once all are parked (within <paramref name="timeout"/>). Any thread.</summary>
    public bool PauseVcpus(TimeSpan timeout) => Pause.Pause(() => { foreach (var v in _vcpus) v.Kick(); }, timeout);

    /// <summary>Lets paused vCPUs run again. Any thread.</summary>
    public void ResumeVcpus() => Pause.Resume();

    /// <summary>Asks the VM to stop from outside (signal, Ctrl-A x). Safe from any thread.</summary>
    public void RequestStop(VmOutcome outcome) => Control.Finish(outcome);

    private bool _vcpusStuck;

    private void StopVcpus()
    {
        // Kick until every thread has left KVM_RUN: a kick can race with a thread entering KVM_RUN,
        // but immediate_exit catches that; the loop is a watchdog against anything else.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        foreach (var v in _vcpus)
        {
            while (true)
            {
                v.Kick();
                if (v.Join(TimeSpan.FromMilliseconds(50))) break;
                if (DateTime.UtcNow > deadline)
                {
                    _log.Warning("vCPU {Id} did not stop within 10 s", v.Vcpu.Id);
                    _vcpusStuck = true;
                    break;
                }
            }
        }
    }

    public long TotalExits
    {
        get { long t = 0; foreach (var v in _vcpus) t += v.Dispatcher.Total; return t; }
    }

    public void Dispose()
    {
        // A vCPU thread still inside KVM_RUN must keep its kvm_run page and guest RAM: leak them rather than
        // unmap memory under it (the process is about to exit anyway).
        if (_vcpusStuck) return;
        Platform.Dispose();
        foreach (var d in _owned) d.Dispose();
        Vm.Dispose();
        Memory.Dispose();
        Kvm.Dispose();
    }
}
