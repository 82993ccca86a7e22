namespace Csvmm.Fuzz;

/// <summary>Reads operands from the input; past its end everything is zero.</summary>
internal ref struct FuzzInput(ReadOnlySpan<byte> data)
{
    private ReadOnlySpan<byte> _rest = data;

    public readonly bool More => !_rest.IsEmpty;

    public byte U8()
    {
        if (_rest.IsEmpty) return 0;
        byte b = _rest[0];
        _rest = _rest[1..];
        return b;
    }

    public ushort U16() => (ushort)(U8() | U8() << 8);
    public uint U24() => U8() | (uint)U8() << 8 | (uint)U8() << 16;
    public uint U32() => U16() | (uint)U16() << 16;

    public ReadOnlySpan<byte> Take(int n)
    {
        var taken = _rest[..Math.Min(n, _rest.Length)];
        _rest = _rest[taken.Length..];
        return taken;
    }
}
