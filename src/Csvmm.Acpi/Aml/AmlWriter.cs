using System.Buffers.Binary;

namespace Csvmm.Acpi.Aml;

/// <summary>
/// A growable little-endian byte sink for AML and resource descriptors, plus the PkgLength encoding
/// (ACPI 6.0 section 20.2.4) that objects with a body put in front of it.
/// </summary>
public sealed class AmlWriter
{
    /// <summary>Largest PkgLength value: 4 bytes carry 4 + 8 + 8 + 8 = 28 bits.</summary>
    public const int MaxPkgLength = (1 << 28) - 1;

    private byte[] _buffer;
    private int _length;

    /// <summary>An empty writer.</summary>
    public AmlWriter(int capacity = 256) => _buffer = new byte[Math.Max(capacity, 16)];

    /// <summary>Number of bytes written.</summary>
    public int Length => _length;

    /// <summary>The bytes written so far (valid until the next write).</summary>
    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>A copy of the bytes written.</summary>
    public byte[] ToArray() => WrittenSpan.ToArray();

    /// <summary>Appends one byte.</summary>
    public void WriteByte(byte value) => Reserve(1)[0] = value;

    /// <summary>Appends a little-endian u16.</summary>
    public void WriteWord(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Reserve(2), value);

    /// <summary>Appends a little-endian u32.</summary>
    public void WriteDWord(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), value);

    /// <summary>Appends a little-endian u64.</summary>
    public void WriteQWord(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), value);

    /// <summary>Appends raw bytes.</summary>
    public void WriteBytes(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Reserve(bytes.Length));

    /// <summary>Appends <paramref name="value"/>'s encoding.</summary>
    public void Write(IAmlObject value) => value.WriteTo(this);

    /// <summary>Appends the PkgLength for a body of <paramref name="payloadLength"/> bytes.</summary>
    public void WritePkgLength(int payloadLength)
    {
        Span<byte> encoded = stackalloc byte[4];
        int n = EncodePkgLength(payloadLength, encoded);
        WriteBytes(encoded[..n]);
    }

    /// <summary>
    /// Appends <paramref name="opcode"/>, then the PkgLength of <paramref name="body"/>, then the body: the shape of
    /// every AML object that has a length (Scope, Device, Method, Package, Buffer).
    /// </summary>
    public void WriteWithPkgLength(ReadOnlySpan<byte> opcode, AmlWriter body)
    {
        WriteBytes(opcode);
        WritePkgLength(body.Length);
        WriteBytes(body.WrittenSpan);
    }

    /// <summary>
    /// Encodes the PkgLength of a body of <paramref name="payloadLength"/> bytes into <paramref name="destination"/>
    /// (at least 4 bytes) and returns how many bytes it took. The encoded value counts the PkgLength bytes
    /// themselves: 1 byte up to a total of 63, 2 up to 4095, 3 up to 2^20 - 1, 4 up to 2^28 - 1.
    /// </summary>
    public static int EncodePkgLength(int payloadLength, Span<byte> destination)
    {
        if (payloadLength < 0 || payloadLength > MaxPkgLength - 4)
            throw new AcpiException($"AML object body of {payloadLength} bytes does not fit a PkgLength (max {MaxPkgLength - 4})");
        int size = PkgLengthSize(payloadLength);
        int total = payloadLength + size;
        if (size == 1)
        {
            destination[0] = (byte)total;
            return 1;
        }
        // Lead byte: bits 7-6 = number of following bytes, bits 3-0 = low nibble; then 8 bits per byte.
        destination[0] = (byte)(((size - 1) << 6) | (total & 0x0F));
        for (int i = 1; i < size; i++)
            destination[i] = (byte)(total >> (4 + 8 * (i - 1)));
        return size;
    }

    /// <summary>How many bytes the PkgLength of a body of <paramref name="payloadLength"/> bytes takes (1-4).</summary>
    public static int PkgLengthSize(int payloadLength) =>
        payloadLength + 1 <= 0x3F ? 1
        : payloadLength + 2 <= 0xFFF ? 2
        : payloadLength + 3 <= 0xF_FFFF ? 3
        : 4;

    private Span<byte> Reserve(int count)
    {
        int end = checked(_length + count);
        if (end > _buffer.Length)
            Array.Resize(ref _buffer, Math.Max(end, checked(_buffer.Length * 2)));
        var span = _buffer.AsSpan(_length, count);
        _length = end;
        return span;
    }
}
