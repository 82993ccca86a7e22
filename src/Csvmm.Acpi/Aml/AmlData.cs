namespace Csvmm.Acpi.Aml;

/// <summary>
/// An integer constant in its shortest encoding: ZeroOp, OneOp, or BytePrefix / WordPrefix / DWordPrefix /
/// QWordPrefix followed by the little-endian value (ACPI 6.0 section 20.2.3). QWord values need a DSDT of revision 2.
/// </summary>
public sealed record AmlInteger(ulong Value) : IAmlObject
{
    /// <summary>The constant 0 (ZeroOp).</summary>
    public static AmlInteger Zero { get; } = new(0);

    /// <summary>The constant 1 (OneOp).</summary>
    public static AmlInteger One { get; } = new(1);

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        switch (Value)
        {
            case 0:
                writer.WriteByte(AmlOpcodes.Zero);
                break;
            case 1:
                writer.WriteByte(AmlOpcodes.One);
                break;
            case <= byte.MaxValue:
                writer.WriteByte(AmlOpcodes.BytePrefix);
                writer.WriteByte((byte)Value);
                break;
            case <= ushort.MaxValue:
                writer.WriteByte(AmlOpcodes.WordPrefix);
                writer.WriteWord((ushort)Value);
                break;
            case <= uint.MaxValue:
                writer.WriteByte(AmlOpcodes.DWordPrefix);
                writer.WriteDWord((uint)Value);
                break;
            default:
                writer.WriteByte(AmlOpcodes.QWordPrefix);
                writer.WriteQWord(Value);
                break;
        }
    }
}

/// <summary>A string constant: StringPrefix, ASCII characters 0x01-0x7F, NUL (ACPI 6.0 section 20.2.3).</summary>
public sealed record AmlString : IAmlObject
{
    /// <summary>Creates the constant; throws <see cref="AcpiException"/> for a NUL or non-ASCII character.</summary>
    public AmlString(string value)
    {
        foreach (char c in value)
            if (c is < '\u0001' or > '\u007F')
                throw new AcpiException($"AML string \"{value}\" has a character outside ASCII 0x01-0x7F");
        Value = value;
    }

    /// <summary>The characters.</summary>
    public string Value { get; }

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        writer.WriteByte(AmlOpcodes.StringPrefix);
        foreach (char c in Value) writer.WriteByte((byte)c);
        writer.WriteByte(0);
    }
}

/// <summary>
/// A compressed EISA ID, ASL's EISAID("PNP0A03"): three upper-case letters of 5 bits each and four hex digits,
/// stored so that the bytes in memory read 'PNP' packed big-endian then the product number (PNP0A03 = 0x030AD041).
/// Encoded as an integer.
/// </summary>
public sealed record AmlEisaId : IAmlObject
{
    /// <summary>Compresses <paramref name="id"/>; throws <see cref="AcpiException"/> unless it has the form UUUNNNN.</summary>
    public AmlEisaId(string id)
    {
        Id = id;
        Value = Compress(id);
    }

    /// <summary>The ID as written, e.g. "PNP0A03".</summary>
    public string Id { get; }

    /// <summary>The compressed 32-bit value.</summary>
    public uint Value { get; }

    /// <summary>The compressed value of an EISA ID string of the form UUUNNNN (U = 'A'-'Z', N = hex digit).</summary>
    public static uint Compress(string id)
    {
        if (id.Length != 7)
            throw new AcpiException($"EISA ID \"{id}\" is not 7 characters (UUUNNNN)");
        uint packed = 0;
        for (int i = 0; i < 3; i++)
        {
            char c = id[i];
            if (c is < 'A' or > 'Z')
                throw new AcpiException($"EISA ID \"{id}\" has '{c}' where an upper-case letter belongs");
            packed = (packed << 5) | (uint)(c - '@'); // 'A' = 1
        }
        for (int i = 3; i < 7; i++)
        {
            int digit = HexDigit(id[i]);
            if (digit < 0)
                throw new AcpiException($"EISA ID \"{id}\" has '{id[i]}' where a hex digit belongs");
            packed = (packed << 4) | (uint)digit;
        }
        // packed = mfg(15 bits) : product(16 bits), most significant first; the table stores it big-endian.
        return System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(packed);
    }

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer) => new AmlInteger(Value).WriteTo(writer);

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}

/// <summary>
/// A package of data objects: PackageOp, PkgLength, element count (byte), elements; VarPackageOp with an integer
/// count when there are more than 255 elements (ACPI 6.0 section 20.2.5.4).
/// </summary>
public sealed class AmlPackage : IAmlObject
{
    private readonly IAmlObject[] _elements;

    /// <summary>A package holding <paramref name="elements"/> in order.</summary>
    public AmlPackage(params IEnumerable<IAmlObject> elements) => _elements = elements.ToArray();

    /// <summary>The elements.</summary>
    public IReadOnlyList<IAmlObject> Elements => _elements;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        var body = new AmlWriter();
        bool small = _elements.Length <= byte.MaxValue;
        if (small) body.WriteByte((byte)_elements.Length);
        else new AmlInteger((ulong)_elements.Length).WriteTo(body);
        foreach (var e in _elements) e.WriteTo(body);
        writer.WriteWithPkgLength([small ? AmlOpcodes.Package : AmlOpcodes.VarPackage], body);
    }
}

/// <summary>A buffer: BufferOp, PkgLength, BufferSize (an integer), the bytes (ACPI 6.0 section 20.2.5.4).</summary>
public sealed class AmlBuffer : IAmlObject
{
    private readonly byte[] _data;

    /// <summary>A buffer initialised with a copy of <paramref name="data"/>.</summary>
    public AmlBuffer(ReadOnlySpan<byte> data) => _data = data.ToArray();

    /// <summary>The contents.</summary>
    public ReadOnlySpan<byte> Data => _data;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        var body = new AmlWriter(_data.Length + 8);
        new AmlInteger((ulong)_data.Length).WriteTo(body);
        body.WriteBytes(_data);
        writer.WriteWithPkgLength([AmlOpcodes.Buffer], body);
    }
}
