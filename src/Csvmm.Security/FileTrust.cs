using System.Runtime.InteropServices;
using Csvmm.Security.Native;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>
/// How much a policy or file_contexts file must be protected before csvmm believes it. Offline,
/// these files ARE the policy: whoever can write them decides every answer.
/// </summary>
public enum FileTrust
{
    /// <summary>Any readable regular file (tests, or a user evaluating their own policy).</summary>
    Any,
    /// <summary>A regular file owned by root and writable by nobody else (no group/other write bit).</summary>
    RootOwned,
}

/// <summary>Checks an already-opened file descriptor, so the file checked is the file then read.</summary>
internal static unsafe class TrustedFile
{
    /// <summary>fstat(fd), or null with <paramref name="error"/> set.</summary>
    internal static bool TryFStat(int fd, out LinuxStat st, out string error)
    {
        LinuxStat s;
        if (LibCFiles.FStat(fd, &s) != 0)
        {
            st = default;
            error = "fstat failed: " + LibCFiles.ErrorText(Marshal.GetLastPInvokeError());
            return false;
        }
        st = s;
        error = "";
        return true;
    }

    /// <summary>Null when <paramref name="st"/> satisfies <paramref name="trust"/>, else the reason (one line).</summary>
    internal static string? Violation(in LinuxStat st, FileTrust trust)
    {
        if ((st.Mode & LibCFiles.S_IFMT) != LibCFiles.S_IFREG)
            return "not a regular file";
        if (trust == FileTrust.RootOwned)
        {
            if (st.Uid != 0)
                return $"owned by uid {st.Uid}, not root";
            if ((st.Mode & 0b000_010_010) != 0)
                return $"writable by group or others (mode {Convert.ToString(st.Mode & 0xFFF, 8)})";
        }
        return null;
    }
}
