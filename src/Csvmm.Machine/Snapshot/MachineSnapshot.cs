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
        w.Add(SectionKind.Devices, 0, vm.Platform.DeviceStates.SaveAll());
        foreach (var v in vm.Vcpus)
            w.Add(SectionKind.Vcpu, (uint)v.Vcpu.Id, VcpuState.Capture(v.Vcpu, Msr.Saved).Encode());
        var chips = new KvmIrqchip[Chips.Length];
        for (int i = 0; i < Chips.Length; i++) chips[i] = vm.Vm.GetIrqchip(Chips[i]);
        w.Add(SectionKind.Irqchip, 0, MemoryMarshal.AsBytes(chips.AsSpan()));
        var pit = vm.Vm.GetPit2();
        w.Add(SectionKind.Pit, 0, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref pit, 1)));
        var clock = vm.Vm.GetClock();
        w.Add(SectionKind.Clock, 0, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref clock, 1)));
        long ram = 0;
        uint index = 0;
        foreach (var r in vm.Memory.Regions)
        {
            if (r.ReadOnly) continue; // ROM comes from the firmware file again
            w.AddRam(index++, r.HostAddress, (long)r.Size);
            ram += (long)r.Size;
        }
        w.Finish();
        return ram;
    }

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
        if (spec.Cpus != vm.Config.Cpus || spec.MemoryBytes != vm.Config.MemoryBytes)
            throw new SnapshotException($"the snapshot is of a {spec.Cpus}-vCPU, {spec.MemoryBytes >> 20} MiB machine, not this one");

        var states = new VcpuState[vm.Vcpus.Count];
        for (int i = 0; i < states.Length; i++)
        {
            var section = reader.Find(SectionKind.Vcpu, (uint)vm.Vcpus[i].Vcpu.Id) ?? throw new SnapshotException($"no state for vCPU {i}");
            states[i] = VcpuState.Decode(reader.Read(section), i);
        }
        if (reader.Sections.Count(s => s.Kind == SectionKind.Vcpu) != states.Length)
            throw new SnapshotException("the snapshot has state for vCPUs this machine does not have");
        byte[] chips = Exact(reader, SectionKind.Irqchip, Chips.Length * Marshal.SizeOf<KvmIrqchip>());
        byte[] pit = Exact(reader, SectionKind.Pit, Marshal.SizeOf<KvmPitState2>());
        byte[] clock = Exact(reader, SectionKind.Clock, Marshal.SizeOf<KvmClockData>());
        byte[] devices = reader.Find(SectionKind.Devices) is { } d ? reader.Read(d) : throw new SnapshotException("no device states");
        var ramRegions = vm.Memory.Regions.Where(r => !r.ReadOnly).ToList();
        var ramSections = reader.Sections.Where(s => s.Kind == SectionKind.Ram).ToList();
        if (ramSections.Count != ramRegions.Count)
            throw new SnapshotException($"the snapshot has {ramSections.Count} RAM regions, this machine {ramRegions.Count}");
        var chipStates = MemoryMarshal.Cast<byte, KvmIrqchip>(chips).ToArray();
        for (int i = 0; i < Chips.Length; i++)
            if (chipStates[i].chip_id != Chips[i]) throw new SnapshotException($"interrupt controller state {i} is for chip {chipStates[i].chip_id}");

        for (int i = 0; i < ramRegions.Count; i++)
        {
            var section = reader.Find(SectionKind.Ram, (uint)i) ?? throw new SnapshotException($"no RAM region {i}");
            reader.ReadRamInto(section, ramRegions[i].HostAddress, (long)ramRegions[i].Size);
        }
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

    private static byte[] Exact(SnapshotReader reader, SectionKind kind, int size)
    {
        var section = reader.Find(kind) ?? throw new SnapshotException($"no {kind} section");
        if (section.Length != size) throw new SnapshotException($"the {kind} section has {section.Length} bytes, not {size}");
        return reader.Read(section);
    }
}
