using Csvmm.Security.Native;
using Serilog;

namespace Csvmm.Security;

/// <summary>Where SELinux decisions go besides csvmm's own log: the audit system on an SELinux host.</summary>
public interface IAvcAudit
{
    /// <summary>Records one decision, as the AVC line the gates format (<see cref="AvcFormat.Line"/>).</summary>
    void UserAvc(string avcLine);
}

/// <summary>
/// USER_AVC records through libaudit (<c>audit_log_user_avc_message</c>), as SELinux userspace object managers (dbus,
/// systemd) send theirs: ausearch -m USER_AVC shows csvmm's entrypoint and management decisions next to the kernel's
/// AVCs. Opened once; a kernel without audit (audit_open fails with EPROTONOSUPPORT, EINVAL or EAFNOSUPPORT) or a
/// missing libaudit turns it off with one log line; a record the kernel refuses is counted and logged once. Never throws
/// from <see cref="UserAvc"/>: auditing must not change a decision. Thread-safe.
/// </summary>
public sealed unsafe class AuditLog : IAvcAudit, IDisposable
{
    /// <summary>AUDIT_USER_AVC from &lt;linux/audit.h&gt;.</summary>
    public const int UserAvcType = 1107;
    private const int EINVAL = 22, EPROTONOSUPPORT = 93, EAFNOSUPPORT = 97;

    private readonly ILibAudit _lib;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private int _fd = -1;
    private bool _warned;

    private AuditLog(ILibAudit lib, ILogger log, int fd)
    {
        _lib = lib;
        _log = log;
        _fd = fd;
    }

    /// <summary>Records sent and refused.</summary>
    public long Sent { get; private set; }
    public long Refused { get; private set; }

    /// <summary>The audit log of this host, or null (with a log line) when there is none to write to.</summary>
    public static AuditLog? Open(ILogger log) => Open(LibAuditNative.Instance, log);

    internal static AuditLog? Open(ILibAudit lib, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(lib);
        ArgumentNullException.ThrowIfNull(log);
        int fd;
        try
        {
            fd = lib.AuditOpen();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            log.Warning("SELinux: libaudit is not usable ({Error}): decisions go to csvmm's log only", e.Message);
            return null;
        }
        if (fd >= 0) return new AuditLog(lib, log, fd);
        int errno = lib.LastError;
        if (errno is EINVAL or EPROTONOSUPPORT or EAFNOSUPPORT)
            log.Debug("SELinux: the kernel has no audit system: decisions go to csvmm's log only");
        else
            log.Warning("SELinux: cannot open the audit system (errno {Errno}): decisions go to csvmm's log only", errno);
        return null;
    }

    public void UserAvc(string avcLine)
    {
        ArgumentNullException.ThrowIfNull(avcLine);
        // AvcFormat already escapes what came from outside; a NUL cannot reach C, so it ends the message there.
        byte[] message = Utf8.ToCString(avcLine) ?? Utf8.ToCString(avcLine[..avcLine.IndexOf('\0')])!;
        lock (_lock)
        {
            if (_fd < 0) return;
            int rc;
            fixed (byte* m = message)
                rc = _lib.AuditLogUserAvcMessage(_fd, UserAvcType, m, null, null, null, _lib.GetUid());
            if (rc > 0)
            {
                Sent++;
                return;
            }
            Refused++;
            if (_warned) return;
            _warned = true;
            _log.Warning("SELinux: the audit system refused a USER_AVC record (errno {Errno}); later refusals are counted, not logged", _lib.LastError);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_fd < 0) return;
            _lib.AuditClose(_fd);
            _fd = -1;
        }
    }
}
