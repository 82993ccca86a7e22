using System.Text;

namespace Csvmm.Security;

/// <summary>Where an AVC record says the decision was made: the audit fields pid= and comm=.</summary>
/// <param name="Pid">Process id logged as pid=.</param>
/// <param name="Comm">Command name logged as comm= (the kernel logs at most 15 bytes of it).</param>
public readonly record struct AvcOrigin(int Pid, string Comm)
{
    /// <summary>This process, as "csvmm".</summary>
    public static AvcOrigin Current => new(Environment.ProcessId, "csvmm");
}

/// <summary>
/// Formats decisions the way SELinux object managers log them (USER_AVC message text):
/// <c>avc:  denied  { entrypoint } for  pid=N comm="csvmm" path="..." scontext=... tcontext=... tclass=vm permissive=0</c>.
/// </summary>
public static class AvcFormat
{
    /// <summary>One AVC line. <paramref name="permissions"/> are listed as given.</summary>
    public static string Line(bool granted, IEnumerable<string> permissions, AvcOrigin origin, string path,
        string sourceContext, string targetContext, string targetClass, bool permissive)
    {
        var sb = new StringBuilder(256);
        sb.Append("avc:  ").Append(granted ? "granted" : "denied").Append("  { ");
        foreach (string p in permissions)
            sb.Append(p).Append(' ');
        sb.Append("} for  pid=").Append(origin.Pid)
          .Append(" comm=").Append(Untrusted(origin.Comm))
          .Append(" path=").Append(Untrusted(path))
          .Append(" scontext=").Append(Printable(sourceContext))
          .Append(" tcontext=").Append(Printable(targetContext))
          .Append(" tclass=").Append(targetClass)
          .Append(" permissive=").Append(permissive ? '1' : '0');
        return sb.ToString();
    }

    /// <summary>
    /// An untrusted string as the audit subsystem logs it: in double quotes when it holds only
    /// printable ASCII other than '"', otherwise as the uppercase hex of its UTF-8 bytes, unquoted
    /// (so a file name cannot forge fields or lines of the record).
    /// </summary>
    public static string Untrusted(string value)
    {
        bool plain = true;
        foreach (char c in value)
            if (c is < '!' or > '~' or '"') { plain = false; break; }
        if (plain)
            return "\"" + value + "\"";
        return Convert.ToHexString(Encoding.UTF8.GetBytes(value));
    }

    /// <summary><paramref name="value"/> with control, space and non-ASCII characters replaced by '?', for messages.</summary>
    public static string Printable(string value)
    {
        foreach (char c in value)
            if (c is < '!' or > '~')
                return string.Create(value.Length, value, static (dst, src) =>
                {
                    for (int i = 0; i < src.Length; i++)
                        dst[i] = src[i] is < '!' or > '~' ? '?' : src[i];
                });
        return value;
    }
}
