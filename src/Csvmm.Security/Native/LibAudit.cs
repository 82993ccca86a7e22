using System.Runtime.InteropServices;

namespace Csvmm.Security.Native;

/// <summary>
/// The libaudit calls csvmm makes on an SELinux host, 1:1 with their C signatures (the seam tests put a fake behind,
/// as for <see cref="ILibSelinux"/>). Strings are NUL-terminated UTF-8 owned by the caller; failures return a negative
/// value with errno in <see cref="LastError"/>.
/// </summary>
internal unsafe interface ILibAudit
{
    /// <summary>int audit_open(void): a netlink socket to the kernel's audit system, or -1 (errno; EPROTONOSUPPORT, EINVAL or EAFNOSUPPORT: the kernel has no audit).</summary>
    int AuditOpen();

    /// <summary>void audit_close(int fd).</summary>
    void AuditClose(int fd);

    /// <summary>
    /// int audit_log_user_avc_message(int audit_fd, int type, const char *message, const char *hostname,
    /// const char *addr, const char *tty, uid_t uid): sends one USER_AVC record; &lt;= 0 on failure.
    /// </summary>
    int AuditLogUserAvcMessage(int fd, int type, byte* message, byte* hostname, byte* addr, byte* tty, uint uid);

    /// <summary>getuid(2).</summary>
    uint GetUid();

    /// <summary>errno of the last failed call on this thread.</summary>
    int LastError { get; }
}

internal sealed unsafe partial class LibAuditNative : ILibAudit
{
    private const string Lib = "libaudit.so.1";

    public static LibAuditNative Instance { get; } = new();

    private LibAuditNative() { }

    public int AuditOpen() => audit_open();
    public void AuditClose(int fd) => audit_close(fd);
    public int AuditLogUserAvcMessage(int fd, int type, byte* message, byte* hostname, byte* addr, byte* tty, uint uid) =>
        audit_log_user_avc_message(fd, type, message, hostname, addr, tty, uid);
    public uint GetUid() => getuid();
    public int LastError => Marshal.GetLastPInvokeError();

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int audit_open();

    [LibraryImport(Lib)]
    private static partial void audit_close(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int audit_log_user_avc_message(int fd, int type, byte* message, byte* hostname, byte* addr, byte* tty, uint uid);

    [LibraryImport("libc.so.6")]
    private static partial uint getuid();
}
