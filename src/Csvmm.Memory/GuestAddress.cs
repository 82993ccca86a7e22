namespace Csvmm.Memory;

/// <summary>A guest-physical address. Arithmetic is checked: a guest-supplied value never wraps silently.</summary>
public readonly record struct GuestAddress(ulong Value) : IComparable<GuestAddress>
{
    public static readonly GuestAddress Zero = new(0);

    /// <summary>Address + offset, throwing <see cref="GuestMemoryException"/> on 64-bit overflow.</summary>
    public GuestAddress Add(ulong offset)
    {
        ulong r = Value + offset;
        if (r < Value) GuestMemoryException.ThrowWrap(this, offset);
        return new GuestAddress(r);
    }

    public bool TryAdd(ulong offset, out GuestAddress result)
    {
        ulong r = Value + offset;
        result = new GuestAddress(r);
        return r >= Value;
    }

    public static GuestAddress operator +(GuestAddress a, ulong offset) => a.Add(offset);

    /// <summary>Distance from <paramref name="origin"/> to this address; throws when this is below it.</summary>
    public ulong OffsetFrom(GuestAddress origin)
    {
        if (Value < origin.Value) GuestMemoryException.ThrowWrap(this, origin.Value);
        return Value - origin.Value;
    }

    public int CompareTo(GuestAddress other) => Value.CompareTo(other.Value);
    public static bool operator <(GuestAddress a, GuestAddress b) => a.Value < b.Value;
    public static bool operator >(GuestAddress a, GuestAddress b) => a.Value > b.Value;
    public static bool operator <=(GuestAddress a, GuestAddress b) => a.Value <= b.Value;
    public static bool operator >=(GuestAddress a, GuestAddress b) => a.Value >= b.Value;

    public override string ToString() => $"0x{Value:x}";
}
