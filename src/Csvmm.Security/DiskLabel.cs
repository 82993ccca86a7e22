using System.Runtime.InteropServices;
using Csvmm.Security.Native;
using Microsoft.Win32.SafeHandles;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>The kind of a file, as a file_contexts line restricts it (<c>--</c>, <c>-d</c>, ...).</summary>
public enum FileKind
{
    /// <summary>No restriction / unknown.</summary>
    Any,
    /// <summary><c>--</c> regular file.</summary>
    Regular,
    /// <summary><c>-d</c> directory.</summary>
    Directory,
    /// <summary><c>-c</c> character device.</summary>
    CharDevice,
    /// <summary><c>-b</c> block device.</summary>
    BlockDevice,
    /// <summary><c>-p</c> named pipe.</summary>
    Fifo,
    /// <summary><c>-l</c> symbolic link.</summary>
    Symlink,
    /// <summary><c>-s</c> socket.</summary>
    Socket,
}

/// <summary>
/// The security label of one disk, and where it came from. A disk without a context is denied by
/// <see cref="EntrypointGate"/> with <see cref="Failure"/> as the reason.
/// </summary>
public sealed record DiskLabel
{
    private DiskLabel(string path, string? context, string source, string? failure)
    {
        Path = path;
        Context = context;
        Source = source;
        Failure = failure;
    }

    /// <summary>The path the label belongs to: the disk's real path when it could be resolved.</summary>
    public string Path { get; }

    /// <summary>The disk's security context, or null when it has none.</summary>
    public string? Context { get; }

    /// <summary>Where the label came from, e.g. <c>/etc/csvmm/file_contexts line 12</c>.</summary>
    public string Source { get; }

    /// <summary>Why there is no context (one line); null when <see cref="Context"/> is set.</summary>
    public string? Failure { get; }

    /// <summary>A disk labelled <paramref name="context"/> by <paramref name="source"/>.</summary>
    public static DiskLabel Labelled(string path, string context, string source)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new DiskLabel(path, context, source, null);
    }

    /// <summary>A disk without a usable label.</summary>
    public static DiskLabel Unlabelled(string path, string source, string failure) => new(path, null, source, failure);

    /// <summary>
    /// The <c>security.selinux</c> extended attribute of an opened disk. Without SELinux in the
    /// kernel any owner of a file may set this attribute, so it is self-asserted: use it only when
    /// the administrator explicitly trusts it (csvmm's --trust-xattr). Works on O_PATH descriptors too.
    /// </summary>
    public static unsafe DiskLabel FromXattr(SafeFileHandle handle, string path)
    {
        ArgumentNullException.ThrowIfNull(handle);
        const string source = "security.selinux xattr";
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            byte* name = stackalloc byte[] { (byte)'s', (byte)'e', (byte)'c', (byte)'u', (byte)'r', (byte)'i', (byte)'t', (byte)'y',
                (byte)'.', (byte)'s', (byte)'e', (byte)'l', (byte)'i', (byte)'n', (byte)'u', (byte)'x', 0 };
            byte* value = stackalloc byte[SecurityContext.MaxLength + 1];
            nint n = LibCFiles.FGetXattr(fd, name, value, SecurityContext.MaxLength + 1);
            int errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            if (n < 0 && errno == Errno.Ebadf)
            {
                // An O_PATH descriptor: read the attribute through its /proc/self/fd magic link,
                // which names the very file the descriptor refers to.
                byte[] procPath = Utf8.ToCString($"/proc/self/fd/{fd}")!;
                fixed (byte* p = procPath)
                    n = LibCFiles.GetXattr(p, name, value, SecurityContext.MaxLength + 1);
                errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            if (n < 0)
            {
                return Unlabelled(path, source, errno == Errno.Enodata
                    ? $"disk {path} has no security.selinux attribute"
                    : $"cannot read the security.selinux attribute of {path}: {LibCFiles.ErrorText(errno)}");
            }
            // The kernel stores the label with a trailing NUL; userspace writers may not.
            string context = Utf8.FromCString(value, (nuint)n);
            return SecurityContext.TryParse(context, out _)
                ? Labelled(path, context, source)
                : Unlabelled(path, source, $"the security.selinux attribute of {path} is not a security context");
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }
}
