namespace Csvmm.Acpi.Aml;

/// <summary>ASL Name(path, value): NameOp, NameString, data object (ACPI 6.0 section 20.2.5.1).</summary>
public sealed class AmlName(AmlNameString path, IAmlObject value) : IAmlObject
{
    /// <summary>The name being declared.</summary>
    public AmlNameString Path { get; } = path;

    /// <summary>Its value.</summary>
    public IAmlObject Value { get; } = value;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        writer.WriteByte(AmlOpcodes.Name);
        Path.WriteTo(writer);
        Value.WriteTo(writer);
    }
}

/// <summary>ASL Scope(path) { terms }: ScopeOp, PkgLength, NameString, TermList (ACPI 6.0 section 20.2.5.1).</summary>
public sealed class AmlScope(AmlNameString path, params IEnumerable<IAmlObject> terms) : IAmlObject
{
    private readonly IAmlObject[] _terms = terms.ToArray();

    /// <summary>The scope's path.</summary>
    public AmlNameString Path { get; } = path;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        var body = new AmlWriter();
        Path.WriteTo(body);
        foreach (var t in _terms) t.WriteTo(body);
        writer.WriteWithPkgLength([AmlOpcodes.Scope], body);
    }
}

/// <summary>
/// ASL Device(path) { terms }: ExtOpPrefix DeviceOp, PkgLength, NameString, TermList (ACPI 6.0 section 20.2.5.2).
/// </summary>
public sealed class AmlDevice(AmlNameString path, params IEnumerable<IAmlObject> terms) : IAmlObject
{
    private readonly IAmlObject[] _terms = terms.ToArray();

    /// <summary>The device's path.</summary>
    public AmlNameString Path { get; } = path;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        var body = new AmlWriter();
        Path.WriteTo(body);
        foreach (var t in _terms) t.WriteTo(body);
        writer.WriteWithPkgLength([AmlOpcodes.ExtOpPrefix, AmlOpcodes.Device], body);
    }
}

/// <summary>
/// ASL Method(path, argCount, Serialized|NotSerialized) { terms }: MethodOp, PkgLength, NameString, MethodFlags
/// (bits 0-2 argument count, bit 3 serialized, bits 4-7 sync level 0), TermList (ACPI 6.0 section 20.2.5.2).
/// </summary>
public sealed class AmlMethod : IAmlObject
{
    private readonly IAmlObject[] _terms;

    /// <summary>A method taking <paramref name="argCount"/> (0-7) arguments.</summary>
    public AmlMethod(AmlNameString path, int argCount, bool serialized, params IEnumerable<IAmlObject> terms)
    {
        if (argCount is < 0 or > 7)
            throw new AcpiException($"AML method {path} has {argCount} arguments; a method takes 0-7");
        Path = path;
        ArgCount = argCount;
        Serialized = serialized;
        _terms = terms.ToArray();
    }

    /// <summary>The method's path.</summary>
    public AmlNameString Path { get; }

    /// <summary>Number of arguments.</summary>
    public int ArgCount { get; }

    /// <summary>Whether the method is serialized.</summary>
    public bool Serialized { get; }

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        var body = new AmlWriter();
        Path.WriteTo(body);
        body.WriteByte((byte)(ArgCount | (Serialized ? 0x08 : 0)));
        foreach (var t in _terms) t.WriteTo(body);
        writer.WriteWithPkgLength([AmlOpcodes.Method], body);
    }
}

/// <summary>ASL Return(value): ReturnOp, ArgObject (ACPI 6.0 section 20.2.5.3).</summary>
public sealed class AmlReturn(IAmlObject value) : IAmlObject
{
    /// <summary>The returned value.</summary>
    public IAmlObject Value { get; } = value;

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        writer.WriteByte(AmlOpcodes.Return);
        Value.WriteTo(writer);
    }
}
