using Csvmm.Block;

namespace Csvmm.Machine;

/// <summary>Where guest COM1 output goes, and whether host input feeds it.</summary>
public enum SerialMode { Stdio, File, None }

/// <summary>One --disk argument, parsed and validated (devices for it arrive with the block-device work).</summary>
public sealed record DiskSpec(string Path, DiskInterface Interface, bool ReadOnly, DiskCache Cache);

public enum DiskInterface { Virtio, Ide }

/// <summary>An opened disk to attach: the backend is owned by the caller and outlives the VM (and its resets).</summary>
/// <param name="Interface">virtio-blk or IDE.</param>
/// <param name="Backend">The opened, locked image.</param>
/// <param name="Name">How logs and the guest's serial number name it.</param>
public sealed record AttachedDisk(DiskInterface Interface, IDiskBackend Backend, string Name);
public enum DiskCache { Writeback, None }

/// <summary>
/// Everything needed to build a VM: the data (<see cref="Spec"/>) plus the host resources — opened disks, the KVM
/// device, test seams. Validated by the CLI; the machine re-checks what it relies on.
/// </summary>
public sealed record MachineConfig
{
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string Append { get; init; } = "";
    public string? Firmware { get; init; }
    public IReadOnlyList<DiskSpec> Disks { get; init; } = [];
    /// <summary>The opened disks the machine attaches, in --disk order (the CLI fills it after the SELinux gate).</summary>
    public IReadOnlyList<AttachedDisk> AttachedDisks { get; init; } = [];
    public ulong MemoryBytes { get; init; } = 512UL << 20;
    public int Cpus { get; init; } = 1;
    public bool NoReboot { get; init; }
    /// <summary>Stop the VM after this long (null: run until the guest ends).</summary>
    public TimeSpan? Timeout { get; init; }
    public string KvmDevice { get; init; } = "/dev/kvm";
    /// <summary>
    /// Where the firmware debug port (0x402, QEMU's debugcon) writes; null: no such port (reads 0xFF, so SeaBIOS
    /// finds no debug console and logs nothing). A host resource, not part of <see cref="Spec"/>.
    /// </summary>
    public Csvmm.Devices.ISerialOutput? FirmwareLog { get; init; }
    /// <summary>Test and embedding seam: registers extra devices on the VM's buses before they are frozen.</summary>
    public Action<VirtualMachine>? ExtraDevices { get; init; }

    /// <summary>The data half of this configuration (what a snapshot records): everything but the host resources.</summary>
    public MachineSpec Spec => new()
    {
        Kernel = Kernel, Initrd = Initrd, Append = Append, Firmware = Firmware, Disks = Disks,
        MemoryBytes = MemoryBytes, Cpus = Cpus, NoReboot = NoReboot, Timeout = Timeout,
    };

    /// <summary>A configuration for <paramref name="spec"/>; the caller adds the host resources (opened disks) with <c>with</c>.</summary>
    public static MachineConfig For(MachineSpec spec) => new()
    {
        Kernel = spec.Kernel, Initrd = spec.Initrd, Append = spec.Append, Firmware = spec.Firmware, Disks = spec.Disks,
        MemoryBytes = spec.MemoryBytes, Cpus = spec.Cpus, NoReboot = spec.NoReboot, Timeout = spec.Timeout,
    };
}
