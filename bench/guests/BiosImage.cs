using Iced.Intel;

namespace Csvmm.Bench.Guests;

/// <summary>
/// A 64 KiB BIOS image as every PC VMM maps it: ending at 4 GiB (the vCPU's first fetch is F000:FFF0,
/// physical 0xFFFFFFF0) and copied to 0xF0000-0xFFFFF. The last 16 bytes hold the reset vector, a far
/// jmp to F000:0000, i.e. image offset 0 in the low copy, where the benchmark code starts.
/// </summary>
public sealed class BiosImage
{
    /// <summary>Image size: one 64 KiB BIOS segment.</summary>
    public const int Size = 0x10000;

    /// <summary>Real-mode segment of the BIOS (its base is <see cref="LowBase"/>).</summary>
    public const ushort Segment = 0xF000;

    /// <summary>Guest-physical address of image offset 0 in the low copy below 1 MiB.</summary>
    public const uint LowBase = 0xF0000;

    /// <summary>Offset of the reset vector inside the image (F000:FFF0).</summary>
    public const int ResetVectorOffset = 0xFFF0;

    private readonly byte[] _bytes = new byte[Size];
    private int _end;   // first offset not yet used by code or data (the reset vector is reserved separately)

    /// <summary>Creates an image filled with <c>hlt</c> (0xF4), so a stray jump stops instead of running garbage.</summary>
    public BiosImage()
    {
        _bytes.AsSpan().Fill(0xF4);
        var reset = new Assembler(16);
        reset.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1616, Segment, 0));
        Place(reset, ResetVectorOffset, 16, "reset vector");
    }

    /// <summary>The finished image.</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>
    /// Assembles <paramref name="code"/> at image <paramref name="offset"/> with the instruction pointer its
    /// bitness sees there (the segment offset for 16-bit code, the flat address in the low copy for 32-bit
    /// code) and checks it fits in <paramref name="room"/> bytes without overlapping earlier pieces.
    /// </summary>
    /// <returns>The number of bytes written.</returns>
    public int Place(Assembler code, int offset, int room, string what)
    {
        ArgumentNullException.ThrowIfNull(code);
        if (offset < 0 || room <= 0 || offset > Size - room)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{what}: [0x{offset:x}, +0x{room:x}) is outside the 64 KiB image");
        if (offset < _end && offset != ResetVectorOffset)
            throw new InvalidOperationException($"{what} at 0x{offset:x} overlaps code placed before it (which ends at 0x{_end:x})");
        ulong ip = code.Bitness == 16 ? (ulong)offset : LowBase + (ulong)offset;
        var writer = new ImageWriter(_bytes, offset, room, what);
        code.Assemble(writer, ip);
        if (offset != ResetVectorOffset) _end = offset + writer.Written;
        return writer.Written;
    }

    /// <summary>Copies raw data (a GDT, a descriptor) to image <paramref name="offset"/>.</summary>
    public void PlaceData(ReadOnlySpan<byte> data, int offset, string what)
    {
        if (offset < _end || offset > ResetVectorOffset - data.Length)
            throw new InvalidOperationException($"{what} at 0x{offset:x} (+{data.Length}) overlaps other code or the reset vector");
        data.CopyTo(_bytes.AsSpan(offset));
        _end = offset + data.Length;
    }

    /// <summary>Writes the image to <paramref name="path"/>.</summary>
    public void Save(string path) => File.WriteAllBytes(path, _bytes);

    /// <summary>An Iced code sink over a fixed window of the image that refuses to run past it.</summary>
    private sealed class ImageWriter(byte[] image, int start, int room, string what) : CodeWriter
    {
        public int Written { get; private set; }

        public override void WriteByte(byte value)
        {
            if (Written >= room)
                throw new InvalidOperationException($"{what} does not fit in its 0x{room:x} bytes at 0x{start:x}");
            image[start + Written] = value;
            Written++;
        }
    }
}
