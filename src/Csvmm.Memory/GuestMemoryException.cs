using System.Diagnostics.CodeAnalysis;

namespace Csvmm.Memory;

/// <summary>The memory layer's error: an access outside guest RAM, a wrap-around, or an mmap failure.</summary>
public sealed class GuestMemoryException : Exception
{
    public GuestMemoryException(string message) : base(message) { }

    [DoesNotReturn]
    internal static void ThrowOutOfRange(GuestAddress address, ulong length) =>
        throw new GuestMemoryException($"guest access [{address}, +0x{length:x}) is outside guest RAM");

    [DoesNotReturn]
    internal static void ThrowWrap(GuestAddress address, ulong offset) =>
        throw new GuestMemoryException($"guest address {address} + 0x{offset:x} wraps around");
}
