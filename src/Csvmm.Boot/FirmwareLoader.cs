using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>One guest range that shows (part of) a firmware image.</summary>
/// <param name="Start">First guest-physical byte.</param>
/// <param name="Size">Length in bytes.</param>
/// <param name="ContentsOffset">Offset in the image of the byte shown at <paramref name="Start"/>.</param>
public readonly record struct FirmwareRegion(GuestAddress Start, ulong Size, int ContentsOffset)
{
    /// <summary>Last byte + 1.</summary>
    public ulong End => Start.Value + Size;
}

/// <summary>
/// A validated BIOS image and where it appears in the guest: the whole image as ROM ending at 4 GiB (where the
/// reset vector 0xFFFFFFF0 is) and its last min(size, 128 KiB) as the legacy BIOS area ending at 1 MiB.
/// </summary>
/// <remarks>
/// This layer knows nothing of KVM: the machine maps the ROM itself, then calls <see cref="CopyTo"/>:
/// <code>
/// memory.AddRegion(image.HighRom.Start, image.HighRom.Size, "bios", readOnly: true);
/// var plan = image.CopyTo(memory);   // fills the ROM and the low alias (ordinary RAM)
/// </code>
/// </remarks>
public sealed class FirmwareImage
{
    internal FirmwareImage(BootFile file)
    {
        File = file;
        ulong size = (ulong)file.Length;
        HighRom = new FirmwareRegion(new GuestAddress(Layout.FourGiB.Value - size), size, 0);
        ulong aliasSize = Math.Min(size, Layout.BiosLowAliasSize);
        LowAlias = new FirmwareRegion(new GuestAddress(Layout.HighMemoryStart.Value - aliasSize), aliasSize, (int)(size - aliasSize));
    }

    /// <summary>The image and its name.</summary>
    public BootFile File { get; }

    /// <summary>The whole image, ending at 4 GiB: to be mapped read-only.</summary>
    public FirmwareRegion HighRom { get; }

    /// <summary>The image's last min(size, 128 KiB), ending at 1 MiB: copied into guest RAM.</summary>
    public FirmwareRegion LowAlias { get; }

    /// <summary>
    /// Copies the image into the ROM region the caller mapped at <see cref="HighRom"/> and into RAM at
    /// <see cref="LowAlias"/>, and returns the plan to start at the reset vector.
    /// </summary>
    /// <exception cref="BootException">No region covers <see cref="HighRom"/>, or the low alias is not in RAM.</exception>
    public BootPlan CopyTo(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var bytes = File.Bytes.Span;
        if (!memory.TryGetSpan(HighRom.Start, (int)HighRom.Size, out var rom))
            throw new BootException($"{File.Name}: no guest region is mapped for the firmware ROM [{HighRom.Start}, 0x{HighRom.End:x})");
        GuestRam.EnsureCovers(memory, LowAlias.Start.Value, LowAlias.Size, $"{File.Name} low BIOS alias");

        bytes.CopyTo(rom);
        GuestRam.Write(memory, LowAlias.Start.Value, bytes.Slice(LowAlias.ContentsOffset, (int)LowAlias.Size), $"{File.Name} low BIOS alias");
        return new BootPlan(EntryMode.RealModeReset, new GuestAddress(FirmwareLoader.ResetVector), GuestAddress.Zero)
        {
            ImageStart = HighRom.Start,
            ImageEnd = new GuestAddress(HighRom.End),
        };
    }
}

/// <summary>Reads and validates BIOS images (SeaBIOS, csvmm's own firmware).</summary>
public static class FirmwareLoader
{
    /// <summary>Firmware images are whole multiples of this.</summary>
    public const int Granule = 64 * 1024;
    /// <summary>Largest firmware image: the ROM must fit between the KVM TSS pages and 4 GiB.</summary>
    public const int MaxSize = 16 * 1024 * 1024;
    /// <summary>Where an x86 CPU fetches its first instruction after reset.</summary>
    public const ulong ResetVector = 0xFFFF_FFF0;

    /// <summary>Reads and validates the firmware file at <paramref name="path"/>.</summary>
    /// <exception cref="BootException">Unreadable, or not a valid size.</exception>
    public static FirmwareImage Read(string path) => Parse(BootFile.Read(path, MaxSize, "firmware"));

    /// <summary>Validates a firmware image: its size must be a non-zero multiple of 64 KiB and at most 16 MiB.</summary>
    /// <exception cref="BootException">Not a valid size.</exception>
    public static FirmwareImage Parse(BootFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        int size = file.Length;
        if (size == 0)
            throw new BootException($"{file.Name}: firmware file is empty");
        if (size > MaxSize)
            throw new BootException($"{file.Name}: firmware is {Size.Describe((ulong)size)}, more than the 16 MiB limit");
        if (size % Granule != 0)
            throw new BootException($"{file.Name}: firmware is {size} bytes, not a multiple of 64 KiB");
        return new FirmwareImage(file);
    }
}
