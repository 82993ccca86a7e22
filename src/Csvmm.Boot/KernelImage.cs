using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>What kind of kernel image a file is.</summary>
public enum KernelFormat
{
    /// <summary>Neither of the formats below.</summary>
    Unknown,
    /// <summary>A bzImage ("HdrS" at 0x202): loaded by <see cref="BzImageLoader"/>, entered in 64-bit mode.</summary>
    BzImage,
    /// <summary>An ELF file (a vmlinux): loaded by <see cref="PvhLoader"/>, entered through PVH.</summary>
    Elf,
}

/// <summary>Recognizes a kernel image by its first bytes and hands it to the matching loader.</summary>
public static class KernelImage
{
    /// <summary>Largest kernel file accepted.</summary>
    public const long MaxKernelBytes = 512L << 20;

    /// <summary>Tells a bzImage from an ELF vmlinux by their magic numbers.</summary>
    public static KernelFormat Detect(ReadOnlySpan<byte> image)
    {
        if (ElfImage.HasElfMagic(image)) return KernelFormat.Elf;
        if (image.Length >= BootParamsLayout.Header + 4 &&
            BinaryPrimitives.ReadUInt32LittleEndian(image[BootParamsLayout.Header..]) == SetupFlags.HeaderMagic)
            return KernelFormat.BzImage;
        return KernelFormat.Unknown;
    }

    /// <summary>Loads <paramref name="kernel"/> with the loader its format needs.</summary>
    /// <exception cref="BootException">An unknown format, or the loader refused the image.</exception>
    public static BootPlan Load(GuestMemory memory, BootFile kernel, BootOptions options)
    {
        return Check(kernel) switch
        {
            KernelFormat.BzImage => BzImageLoader.Load(memory, kernel, options),
            _ => PvhLoader.Load(memory, kernel, options),
        };
    }

    /// <summary>The format of <paramref name="kernel"/>, checked before any guest exists (so a wrong file is refused before KVM is touched).</summary>
    /// <exception cref="BootException">Neither a bzImage nor an ELF vmlinux.</exception>
    public static KernelFormat Check(BootFile kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        KernelFormat format = Detect(kernel.Bytes.Span);
        if (format == KernelFormat.Unknown)
            throw new BootException($"{kernel.Name}: neither a bzImage nor an ELF vmlinux (no HdrS magic at 0x202, no \\x7fELF magic){TextHint(kernel.Bytes.Span)}");
        return format;
    }

    /// <summary>Reads the kernel file (at most <see cref="MaxKernelBytes"/>) and checks its format.</summary>
    public static BootFile ReadFile(string kernelPath)
    {
        var kernel = BootFile.Read(kernelPath, MaxKernelBytes, "kernel");
        Check(kernel);
        return kernel;
    }

    /// <summary>Reads the initrd file (at most the guest's RAM, <paramref name="ramBytes"/>).</summary>
    public static BootFile ReadInitrd(string initrdPath, ulong ramBytes) =>
        BootFile.Read(initrdPath, (long)Math.Min(ramBytes, long.MaxValue), "initrd", "of guest RAM");

    /// <summary>
    /// Reads the kernel (at most <see cref="MaxKernelBytes"/>) and the optional initrd (at most the guest's RAM) and
    /// loads them; file names appear in every error message.
    /// </summary>
    public static BootPlan LoadFiles(GuestMemory memory, string kernelPath, string? initrdPath, string commandLine, GuestAddress? rsdpAddress)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var kernel = ReadFile(kernelPath);
        var initrd = initrdPath is null ? null : ReadInitrd(initrdPath, memory.RamSize);
        return Load(memory, kernel, new BootOptions { CommandLine = commandLine, Initrd = initrd, RsdpAddress = rsdpAddress });
    }

    /// <summary>" (it looks like a text file)" when the first bytes are all printable ASCII, else "".</summary>
    private static string TextHint(ReadOnlySpan<byte> image)
    {
        var head = image[..Math.Min(image.Length, 256)];
        if (head.IsEmpty) return "";
        foreach (byte b in head)
            if (b is not ((>= 0x20 and < 0x7F) or (byte)'\n' or (byte)'\r' or (byte)'\t'))
                return "";
        return " (it looks like a text file)";
    }
}
