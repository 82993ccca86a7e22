using System.Text;

namespace Csvmm.Security.Native;

/// <summary>NUL-terminated UTF-8 for C strings, and back.</summary>
internal static unsafe class Utf8
{
    /// <summary>UTF-8 bytes of <paramref name="s"/> plus a terminating NUL; null if <paramref name="s"/> contains a NUL itself.</summary>
    internal static byte[]? ToCString(string s)
    {
        if (s.Contains('\0'))
            return null;
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    /// <summary>Decodes a C string of at most <paramref name="maxLength"/> bytes (stops at the first NUL).</summary>
    internal static string FromCString(byte* p, nuint maxLength)
    {
        var span = new ReadOnlySpan<byte>(p, checked((int)maxLength));
        int nul = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? span[..nul] : span);
    }

    /// <summary>Decodes a NUL-terminated C string.</summary>
    internal static string FromCString(byte* p) =>
        Encoding.UTF8.GetString(System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpanFromNullTerminated(p));
}
