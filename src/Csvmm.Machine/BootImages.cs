using Csvmm.Boot;

namespace Csvmm.Machine;

/// <summary>
/// The files a VM boots from (firmware, or kernel and initrd), read and checked once, before KVM is touched, and
/// reused by every boot of the machine: a reset loads the same bytes again (as QEMU keeps its -bios / -kernel
/// blobs), whatever happened to the files since. A missing, unreadable or malformed file is a
/// <see cref="BootException"/> with one line naming it.
/// </summary>
public sealed class BootImages
{
    private BootImages(FirmwareImage? firmware, BootFile? kernel, BootFile? initrd)
    {
        Firmware = firmware;
        Kernel = kernel;
        Initrd = initrd;
    }

    /// <summary>The firmware image (--firmware), size-checked.</summary>
    public FirmwareImage? Firmware { get; }

    /// <summary>The kernel (--kernel), a bzImage or an ELF vmlinux.</summary>
    public BootFile? Kernel { get; }

    /// <summary>The initrd (--initrd), at most the guest's RAM.</summary>
    public BootFile? Initrd { get; }

    /// <summary>Reads and checks what <paramref name="config"/> boots from.</summary>
    /// <exception cref="BootException">Nothing to boot, or a file that cannot be used.</exception>
    public static BootImages Read(MachineConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Firmware is { } fw)
            return new BootImages(FirmwareLoader.Read(fw), null, null);
        if (config.Kernel is { } kernel)
        {
            BootFile k = KernelImage.ReadFile(kernel);
            BootFile? initrd = config.Initrd is { } i ? KernelImage.ReadInitrd(i, config.MemoryBytes) : null;
            return new BootImages(null, k, initrd);
        }
        throw new BootException("nothing to boot: no kernel and no firmware");
    }
}
