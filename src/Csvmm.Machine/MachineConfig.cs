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

/// <summary>Everything needed to build a VM. Validated by the CLI; the machine re-checks what it relies on.</summary>
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
    /// <summary>Test and embedding seam: registers extra devices on the VM's buses before they are frozen.</summary>
    public Action<VirtualMachine>? ExtraDevices { get; init; }
}
