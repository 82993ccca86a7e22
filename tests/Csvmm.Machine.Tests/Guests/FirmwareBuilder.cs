using Iced.Intel;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// Builds a 64 KiB firmware image out of separately assembled pieces. csvmm maps such an image at
/// 4 GiB − 64 KiB and copies it to 0xF0000–0xFFFFF (the low BIOS alias); the pieces are placed by their
/// address in that low copy, which is where the guest runs them (16-bit code as segment 0xF000).
/// The last 16 bytes hold the reset vector: a far jump from F000:FFF0 to the entry point.
/// </summary>
public sealed class FirmwareBuilder
{
    /// <summary>Size of the image (one firmware granule).</summary>
    public const int ImageSize = 0x10000;

    /// <summary>Guest-physical address of the image's first byte in the low alias.</summary>
    public const uint LowBase = 0xF0000;

    /// <summary>Real-mode segment whose offsets equal image offsets.</summary>
    public const ushort Segment = 0xF000;

    private const int ResetVectorOffset = ImageSize - 16;

    private readonly byte[] _image = new byte[ImageSize];
    private readonly List<(int Start, int End, string Name)> _used = [(ResetVectorOffset, ImageSize, "reset vector")];

    /// <summary>Assembles 16-bit code that runs at F000:(address − 0xF0000).</summary>
    public Placed Add16(uint address, string name, Action<Assembler> emit) =>
        Add(16, address, address - LowBase, name, emit);

    /// <summary>Assembles 32-bit code that runs at its flat address <paramref name="address"/>.</summary>
    public Placed Add32(uint address, string name, Action<Assembler> emit) => Add(32, address, address, name, emit);

    /// <summary>Assembles 64-bit code that runs at its identity-mapped address <paramref name="address"/>.</summary>
    public Placed Add64(uint address, string name, Action<Assembler> emit) => Add(64, address, address, name, emit);

    /// <summary>
    /// Assembles code stored at <paramref name="address"/> in the image but built for instruction pointer
    /// <paramref name="ip"/> (code the guest copies elsewhere, e.g. an AP trampoline).
    /// </summary>
    public Placed Add(int bitness, uint address, ulong ip, string name, Action<Assembler> emit)
    {
        var asm = new Assembler(bitness);
        emit(asm);
        using var stream = new MemoryStream();
        AssemblerResult result = asm.Assemble(new StreamCodeWriter(stream), ip, BlockEncoderOptions.ReturnNewInstructionOffsets);
        Store(address, stream.ToArray(), name);
        return new Placed(address, ip, (int)stream.Length, result);
    }

    /// <summary>Stores raw bytes (tables, strings) at <paramref name="address"/>.</summary>
    public void AddData(uint address, ReadOnlySpan<byte> bytes, string name) => Store(address, bytes, name);

    /// <summary>Finishes the image: the reset vector jumps to <paramref name="entrySegment"/>:<paramref name="entryOffset"/>.</summary>
    public byte[] Build(ushort entrySegment = Segment, ushort entryOffset = 0)
    {
        var asm = new Assembler(16);
        asm.jmp(entrySegment, entryOffset);
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0xFFF0);
        stream.ToArray().CopyTo(_image, ResetVectorOffset);
        return (byte[])_image.Clone();
    }

    private void Store(uint address, ReadOnlySpan<byte> bytes, string name)
    {
        if (address < LowBase || address - LowBase + (ulong)bytes.Length > ImageSize)
            throw new ArgumentOutOfRangeException(nameof(address), $"{name} (0x{address:x}, {bytes.Length} bytes) is outside the image");
        int start = (int)(address - LowBase), end = start + bytes.Length;
        foreach (var u in _used)
            if (start < u.End && u.Start < end)
                throw new InvalidOperationException($"{name} [0x{address:x}, +{bytes.Length}) overlaps {u.Name}");
        _used.Add((start, end, name));
        bytes.CopyTo(_image.AsSpan(start));
    }

    /// <summary>Where a piece went, and where its labels ended up.</summary>
    public sealed record Placed(uint Address, ulong Ip, int Length, AssemblerResult Result)
    {
        /// <summary>The instruction pointer the guest has at <paramref name="label"/>.</summary>
        public ulong LabelIp(Label label) => Result.GetLabelRIP(label);
    }
}
