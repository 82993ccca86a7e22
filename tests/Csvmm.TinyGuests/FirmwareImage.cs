using Iced.Intel;

namespace Csvmm.TinyGuests;

/// <summary>
/// A 64 KiB BIOS image built from separately assembled pieces, placed by their address in the low alias
/// (0xF0000-0xFFFFF) where the guest runs them. csvmm (<c>--firmware</c>) and QEMU (<c>-bios</c>) both map the image
/// at 4 GiB − 64 KiB and alias it there; the vCPU starts at F000:FFF0, whose 16 bytes hold a far jmp to the entry.
/// Pieces may not overlap each other or the reset vector. The one builder of the machine tests' guests, the disk
/// guests and bench/guests' exit benchmarks.
/// </summary>
public sealed class FirmwareImage
{
    /// <summary>Size of the image (one firmware granule).</summary>
    public const int Size = 0x10000;

    /// <summary>Guest-physical address of the image's first byte in the low alias.</summary>
    public const uint LowBase = 0xF0000;

    /// <summary>Real-mode segment whose offsets are image offsets.</summary>
    public const ushort Segment = 0xF000;

    /// <summary>Offset of the reset vector (F000:FFF0) in the image: its last 16 bytes.</summary>
    public const int ResetVectorOffset = Size - 16;

    /// <summary>The default fill: <c>hlt</c>, so a stray jump stops rather than running garbage.</summary>
    public const byte HltFill = 0xF4;

    private readonly byte[] _image = new byte[Size];
    private readonly List<(int Start, int End, string Name)> _used = [(ResetVectorOffset, Size, "reset vector")];

    /// <summary>Creates an image whose unused bytes are <paramref name="fill"/> (<see cref="HltFill"/> unless told).</summary>
    public FirmwareImage(byte fill = HltFill)
    {
        if (fill != 0) _image.AsSpan().Fill(fill);
    }

    /// <summary>Assembles <paramref name="code"/> for the address it runs at (16-bit code: its offset in segment F000).</summary>
    public Placed Add(Assembler code, uint address, string name)
    {
        ArgumentNullException.ThrowIfNull(code);
        return Add(code, address, code.Bitness == 16 ? address - LowBase : address, name);
    }

    /// <summary>
    /// Assembles <paramref name="code"/>, stored at <paramref name="address"/> in the image but built for instruction
    /// pointer <paramref name="ip"/> (code the guest copies elsewhere, e.g. an AP trampoline).
    /// </summary>
    public Placed Add(Assembler code, uint address, ulong ip, string name)
    {
        ArgumentNullException.ThrowIfNull(code);
        using var stream = new MemoryStream();
        AssemblerResult result = code.Assemble(new StreamCodeWriter(stream), ip, BlockEncoderOptions.ReturnNewInstructionOffsets);
        Store(address, stream.ToArray(), name);
        return new Placed(address, ip, (int)stream.Length, result);
    }

    /// <summary>Assembles what <paramref name="emit"/> writes as 16-bit code that runs at F000:(address − 0xF0000).</summary>
    public Placed Add16(uint address, string name, Action<Assembler> emit) => Add(16, address, address - LowBase, name, emit);

    /// <summary>Assembles 32-bit code that runs at its flat address <paramref name="address"/>.</summary>
    public Placed Add32(uint address, string name, Action<Assembler> emit) => Add(32, address, address, name, emit);

    /// <summary>Assembles 64-bit code that runs at its identity-mapped address <paramref name="address"/>.</summary>
    public Placed Add64(uint address, string name, Action<Assembler> emit) => Add(64, address, address, name, emit);

    /// <summary>Assembles <paramref name="bitness"/>-bit code stored at <paramref name="address"/>, built for <paramref name="ip"/>.</summary>
    public Placed Add(int bitness, uint address, ulong ip, string name, Action<Assembler> emit)
    {
        ArgumentNullException.ThrowIfNull(emit);
        var asm = new Assembler(bitness);
        emit(asm);
        return Add(asm, address, ip, name);
    }

    /// <summary>Stores raw bytes (tables, strings, descriptors) at <paramref name="address"/>.</summary>
    public void AddData(uint address, ReadOnlySpan<byte> bytes, string name) => Store(address, bytes, name);

    /// <summary>The finished image: the reset vector far-jumps to <paramref name="entrySegment"/>:<paramref name="entryOffset"/>.</summary>
    public byte[] Build(ushort entryOffset = 0, ushort entrySegment = Segment)
    {
        var asm = new Assembler(16);
        asm.jmp(entrySegment, entryOffset);
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

    /// <summary>Where a piece went, the instruction pointer it was built for, its length, and where its labels ended up.</summary>
    public sealed record Placed(uint Address, ulong Ip, int Length, AssemblerResult Result)
    {
        /// <summary>The instruction pointer the guest has at <paramref name="label"/>.</summary>
        public ulong LabelIp(Label label) => Result.GetLabelRIP(label);
    }
}
