using Iced.Intel;

namespace Csvmm.TinyGuests;

/// <summary>
/// A 64 KiB BIOS image built from separately assembled pieces, placed by their address in the low alias
/// (0xF0000-0xFFFFF) where the guest runs them. csvmm (<c>--firmware</c>) and QEMU (<c>-bios</c>) both map the image
/// at 4 GiB − 64 KiB and alias it there; the vCPU starts at F000:FFF0, whose 16 bytes hold a far jmp to the entry.
/// Pieces may not overlap each other or the reset vector.
/// </summary>
public sealed class FirmwareImage
{
    /// <summary>Size of the image.</summary>
    public const int Size = 0x10000;

    /// <summary>Guest-physical address of the image's first byte in the low alias.</summary>
    public const uint LowBase = 0xF0000;

    /// <summary>Real-mode segment whose offsets are image offsets.</summary>
    public const ushort Segment = 0xF000;

    private const int ResetVectorOffset = Size - 16;

    private readonly byte[] _image = new byte[Size];
    private readonly List<(int Start, int End, string Name)> _used = [(ResetVectorOffset, Size, "reset vector")];

    /// <summary>Creates an image filled with <c>hlt</c>, so a stray jump stops rather than running garbage.</summary>
    public FirmwareImage() => _image.AsSpan().Fill(0xF4);

    /// <summary>Assembles <paramref name="code"/> for the address it runs at (16-bit code: its offset in segment F000).</summary>
    public Placed Add(Assembler code, uint address, string name)
    {
        ArgumentNullException.ThrowIfNull(code);
        ulong ip = code.Bitness == 16 ? address - LowBase : address;
        using var stream = new MemoryStream();
        AssemblerResult result = code.Assemble(new StreamCodeWriter(stream), ip, BlockEncoderOptions.ReturnNewInstructionOffsets);
        Store(address, stream.ToArray(), name);
        return new Placed(address, (int)stream.Length, result);
    }

    /// <summary>Stores raw bytes (tables, strings, the operation block) at <paramref name="address"/>.</summary>
    public void AddData(uint address, ReadOnlySpan<byte> bytes, string name) => Store(address, bytes, name);

    /// <summary>The finished image: the reset vector far-jumps to F000:<paramref name="entryOffset"/>.</summary>
    public byte[] Build(ushort entryOffset)
    {
        var asm = new Assembler(16);
        asm.jmp(Segment, entryOffset);
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), ResetVectorOffset);
        stream.ToArray().CopyTo(_image, ResetVectorOffset);
        return (byte[])_image.Clone();
    }

    private void Store(uint address, ReadOnlySpan<byte> bytes, string name)
    {
        if (address < LowBase || address - LowBase + (ulong)bytes.Length > Size)
            throw new ArgumentOutOfRangeException(nameof(address), $"{name} (0x{address:x}, {bytes.Length} bytes) is outside the image");
        int start = (int)(address - LowBase), end = start + bytes.Length;
        foreach (var u in _used)
            if (start < u.End && u.Start < end)
                throw new InvalidOperationException($"{name} [0x{address:x}, +{bytes.Length}) overlaps {u.Name}");
        _used.Add((start, end, name));
        bytes.CopyTo(_image.AsSpan(start));
    }

    /// <summary>Where a piece went and how long it is.</summary>
    public sealed record Placed(uint Address, int Length, AssemblerResult Result);
}
