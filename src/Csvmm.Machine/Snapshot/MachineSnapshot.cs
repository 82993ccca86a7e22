using System.Runtime.InteropServices;
using Csvmm.Kvm;
using Csvmm.Machine.X86;

namespace Csvmm.Machine.Snapshot;

/// <summary>
/// Saves a stopped machine to a snapshot file and loads one into a freshly built machine of the same spec: guest RAM,
/// every vCPU (<see cref="VcpuState"/>), the in-kernel PICs and IOAPIC, the PIT, kvmclock, and the device models'
/// states (<see cref="VirtualMachine.Platform"/>'s DeviceStates). Before anything is captured the devices are quiesced:
/// virtio I/O threads complete the requests they have taken and stop, IDE channels wait for their request in flight.
/// Disks are not copied: a restore opens them again by path, and a drive refuses a state taken of a disk of another size.
/// </summary>
public static class MachineSnapshot
{
    private static readonly uint[] Chips = [KvmIrqRoutingEntry.IrqchipPicMaster, KvmIrqRoutingEntry.IrqchipPicSlave, KvmIrqRoutingEntry.IrqchipIoapic];

    /// <summary>Writes <paramref name="vm"/> (its vCPUs stopped) to <paramref name="path"/>. Returns the bytes of RAM written.</summary>
    public static long Save(VirtualMachine vm, string path)
    {
        ArgumentNullException.ThrowIfNull(vm);
        vm.Platform.QuiesceDevices();
        try
        {
            return Write(vm, path);
        }
        finally
        {
            vm.Platform.ResumeDevices(); // the vCPUs stay stopped; the devices finish what the guest queued before
        }
    }

    private static long Write(VirtualMachine vm, string path)
    {
        using var w = new SnapshotWriter(path);
        w.Add(SectionKind.Spec, 0, vm.Config.Spec.Encode());
        foreach (var (kind, index, payload) in CaptureState(vm)) w.Add(kind, index, payload);
        long ram = 0;
        uint i = 0;
        foreach (var r in vm.Memory.Regions)
        {
            if (r.ReadOnly) continue; // ROM comes from the firmware file again
            w.AddRam(i++, r.HostAddress, (long)r.Size);
            ram += (long)r.Size;
        }
        w.Finish();
        return ram;
    }

    /// <summary>
    /// Everything but the spec and RAM, as sections (a snapshot file's, a migration stream's): the device models, every
    /// vCPU, the PICs and IOAPIC, the PIT, kvmclock. The vCPUs must be stopped and the devices quiesced.
    /// </summary>
    internal static List<(SectionKind Kind, uint Index, byte[] Payload)> CaptureState(VirtualMachine vm)
    {
        var list = new List<(SectionKind, uint, byte[])> { (SectionKind.Devices, 0, vm.Platform.DeviceStates.SaveAll()) };
        foreach (var v in vm.Vcpus)
            list.Add((SectionKind.Vcpu, (uint)v.Vcpu.Id, VcpuState.Capture(v.Vcpu, Msr.Saved).Encode()));
        var chips = new KvmIrqchip[Chips.Length];
        for (int i = 0; i < Chips.Length; i++) chips[i] = vm.Vm.GetIrqchip(Chips[i]);
        list.Add((SectionKind.Irqchip, 0, MemoryMarshal.AsBytes(chips.AsSpan()).ToArray()));
        var pit = vm.Vm.GetPit2();
        list.Add((SectionKind.Pit, 0, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref pit, 1)).ToArray()));
        var clock = vm.Vm.GetClock();
        list.Add((SectionKind.Clock, 0, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref clock, 1)).ToArray()));
        return list;
    }

    /// <summary>The writable RAM regions, in the order RAM sections number them.</summary>
    internal static List<Memory.GuestRegion> RamRegions(VirtualMachine vm) => vm.Memory.Regions.Where(r => !r.ReadOnly).ToList();

    /// <summary>The machine spec a snapshot was taken of.</summary>
    public static MachineSpec ReadSpec(SnapshotReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        try
        {
            return MachineSpec.Decode(reader.Read(reader.Find(SectionKind.Spec)!.Value));
        }
        catch (Devices.State.DeviceStateException e)
        {
            throw new SnapshotException(e.Message);
        }
    }

    /// <summary>
    /// Loads a snapshot into <paramref name="vm"/>, built from the snapshot's spec and not yet run. Everything that can
    /// be checked without touching the machine is checked first (section sizes, vCPU states decoded, RAM regions
    /// matching); a failure after that leaves a machine that must not run (the caller discards it).
    /// </summary>
    public static void Load(VirtualMachine vm, SnapshotReader reader)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(reader);
        var spec = ReadSpec(reader);
        var sections = new Dictionary<(SectionKind, uint), byte[]>();
        foreach (var s in reader.Sections)
            if (s.Kind is not (SectionKind.Ram or SectionKind.Spec)) sections[(s.Kind, s.Index)] = reader.Read(s);
        var ramRegions = RamRegions(vm);
        var ramSections = reader.Sections.Where(s => s.Kind == SectionKind.Ram).ToList();
        LoadState(vm, spec, sections, () =>
        {
            if (ramSections.Count != ramRegions.Count)
                throw new SnapshotException($"the snapshot has {ramSections.Count} RAM regions, this machine {ramRegions.Count}");
            for (int i = 0; i < ramRegions.Count; i++)
            {
                var section = reader.Find(SectionKind.Ram, (uint)i) ?? throw new SnapshotException($"no RAM region {i}");
                reader.ReadRamInto(section, ramRegions[i].HostAddress, (long)ramRegions[i].Size);
            }
        });
    }

    /// <summary>
    /// Loads a machine's state (<see cref="CaptureState"/>'s sections, by kind and index) into <paramref name="vm"/>, built
    /// from <paramref name="spec"/> and not yet run: everything is decoded and checked first, then <paramref name="loadRam"/>
    /// runs (it may refuse too), then the state is applied. A failure after the checks leaves a machine that must not run.
    /// </summary>
    internal static void LoadState(VirtualMachine vm, MachineSpec spec, IReadOnlyDictionary<(SectionKind Kind, uint Index), byte[]> sections, Action loadRam)
    {
        if (spec.Cpus != vm.Config.Cpus || spec.MemoryBytes != vm.Config.MemoryBytes)
            throw new SnapshotException($"the snapshot is of a {spec.Cpus}-vCPU, {spec.MemoryBytes >> 20} MiB machine, not this one");

        var states = new VcpuState[vm.Vcpus.Count];
        for (int i = 0; i < states.Length; i++)
        {
            var payload = sections.GetValueOrDefault((SectionKind.Vcpu, (uint)vm.Vcpus[i].Vcpu.Id)) ?? throw new SnapshotException($"no state for vCPU {i}");
            states[i] = VcpuState.Decode(payload, i);
        }
        if (sections.Keys.Count(k => k.Kind == SectionKind.Vcpu) != states.Length)
            throw new SnapshotException("the snapshot has state for vCPUs this machine does not have");
        byte[] chips = Exact(sections, SectionKind.Irqchip, Chips.Length * Marshal.SizeOf<KvmIrqchip>());
        byte[] pit = Exact(sections, SectionKind.Pit, Marshal.SizeOf<KvmPitState2>());
        byte[] clock = Exact(sections, SectionKind.Clock, Marshal.SizeOf<KvmClockData>());
        byte[] devices = sections.GetValueOrDefault((SectionKind.Devices, 0u)) ?? throw new SnapshotException("no device states");
        var chipStates = MemoryMarshal.Cast<byte, KvmIrqchip>(chips).ToArray();
        for (int i = 0; i < Chips.Length; i++)
            if (chipStates[i].chip_id != Chips[i]) throw new SnapshotException($"interrupt controller state {i} is for chip {chipStates[i].chip_id}");

        loadRam();
        vm.Platform.QuiesceDevices(); // a virtio device activated by its loaded state waits for the rest of the machine
        try
        {
            vm.Platform.LoadDeviceStates(devices);
        }
        catch (Devices.State.DeviceStateException e)
        {
            throw new SnapshotException(e.Message);
        }
        foreach (var c in chipStates) vm.Vm.SetIrqchip(c);
        vm.Vm.SetPit2(MemoryMarshal.Read<KvmPitState2>(pit));
        var clk = MemoryMarshal.Read<KvmClockData>(clock);
        vm.Vm.SetClock(new KvmClockData { clock = clk.clock });
        for (int i = 0; i < states.Length; i++) states[i].Apply(vm.Vcpus[i].Vcpu);
        vm.Platform.ResumeDevices();
    }

    private static byte[] Exact(IReadOnlyDictionary<(SectionKind Kind, uint Index), byte[]> sections, SectionKind kind, int size)
    {
        var payload = sections.GetValueOrDefault((kind, 0u)) ?? throw new SnapshotException($"no {kind} section");
        if (payload.Length != size) throw new SnapshotException($"the {kind} section has {payload.Length} bytes, not {size}");
        return payload;
    }
}
