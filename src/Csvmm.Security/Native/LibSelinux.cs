using System.Runtime.InteropServices;

namespace Csvmm.Security.Native;

/// <summary>
/// libselinux's <c>struct av_decision</c> from &lt;selinux/selinux.h&gt;: six uint32, 24 bytes (libsepol's
/// <c>struct sepol_av_decision</c> has no <see cref="Flags"/>: 20 bytes; do not mix them up).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AvDecision
{
    public uint Allowed;
    public uint Decided;
    public uint AuditAllow;
    public uint AuditDeny;
    public uint SeqNo;
    /// <summary>SELINUX_AVD_FLAGS_* bits.</summary>
    public uint Flags;

    /// <summary>SELINUX_AVD_FLAGS_PERMISSIVE: the source domain is permissive (denials are logged, not enforced).</summary>
    public const uint FlagsPermissive = 0x0001;
}

/// <summary>
/// The libselinux (and two libc) calls csvmm makes on an SELinux host, 1:1 with their C signatures: the
/// seam between <see cref="SelinuxEngine"/> / <see cref="SelinuxHost"/> / <see cref="SelinuxTransition"/>
/// and the native library, so tests can put a fake native layer behind them.
/// <para>
/// Conventions, as in C: strings passed in are NUL-terminated UTF-8 owned by the caller; every context
/// returned through a <c>char **</c> is malloc'd by libselinux and must be released with
/// <see cref="Freecon"/> (also when the caller rejects it); on failure a call returns -1 (or 0 for the
/// two name lookups) and <see cref="LastError"/>, read right after the call on the same thread, is errno.
/// </para>
/// <para>
/// The <c>_raw</c> variants are used throughout: they neither contact mcstrans nor translate MLS levels,
/// so the contexts compared, logged and passed to setexeccon are the kernel's own strings.
/// </para>
/// </summary>
internal unsafe interface ILibSelinux
{
    /// <summary>int is_selinux_enabled(void): 1 enabled, 0 not, -1 error.</summary>
    int IsSelinuxEnabled();

    /// <summary>int security_getenforce(void): 1 enforcing, 0 permissive, -1 error (errno).</summary>
    int SecurityGetenforce();

    /// <summary>int getcon_raw(char **con): the calling thread's context; 0 or -1 (errno).</summary>
    int GetconRaw(byte** context);

    /// <summary>int getpeercon_raw(int fd, char **con): the context of the process at the other end of a connected Unix socket; 0 or -1 (errno).</summary>
    int GetpeerconRaw(int fd, byte** context);

    /// <summary>int fgetfilecon_raw(int fd, char **con): the file's label; its length including the NUL, or -1 (errno; EBADF for an O_PATH fd before libselinux 3.5).</summary>
    int FGetfileconRaw(int fd, byte** context);

    /// <summary>int getfilecon_raw(const char *path, char **con): as <see cref="FGetfileconRaw"/>, following symlinks.</summary>
    int GetfileconRaw(byte* path, byte** context);

    /// <summary>void freecon(char *con).</summary>
    void Freecon(byte* context);

    /// <summary>security_class_t string_to_security_class(const char *name): 0 when the loaded policy has no such class (errno EINVAL, or ENOENT without selinuxfs).</summary>
    ushort StringToSecurityClass(byte* name);

    /// <summary>access_vector_t string_to_av_perm(security_class_t tclass, const char *perm): 0 when the class has no such permission.</summary>
    uint StringToAvPerm(ushort securityClass, byte* permission);

    /// <summary>int security_check_context_raw(const char *con): 0 when the kernel's policy accepts the context, else -1 (errno).</summary>
    int SecurityCheckContextRaw(byte* context);

    /// <summary>int security_compute_av_flags_raw(scon, tcon, tclass, requested, struct av_decision *avd): 0 or -1 (errno).</summary>
    int SecurityComputeAvFlagsRaw(byte* source, byte* target, ushort securityClass, uint requested, AvDecision* decision);

    /// <summary>int security_compute_relabel_raw(scon, tcon, tclass, char **newcon): evaluates type_change; 0 or -1 (errno).</summary>
    int SecurityComputeRelabelRaw(byte* source, byte* target, ushort securityClass, byte** newContext);

    /// <summary>int setexeccon_raw(const char *con): the context of this thread's next execve; 0 or -1 (errno).</summary>
    int SetexecconRaw(byte* context);

    /// <summary>libc's int execve(const char *path, char *const argv[], char *const envp[]): returns only on failure (-1, errno).</summary>
    int Execve(byte* path, byte** argv, byte** envp);

    /// <summary>errno of this thread's last call through this interface.</summary>
    int LastError { get; }
}

/// <summary>The real libselinux.so.1 (always installed on Debian, with or without SELinux in the kernel).</summary>
internal sealed unsafe partial class LibSelinuxNative : ILibSelinux
{
    private const string Lib = "libselinux.so.1";

    /// <summary>The one instance (the class has no state).</summary>
    public static LibSelinuxNative Instance { get; } = new();

    private LibSelinuxNative() { }

    public int IsSelinuxEnabled() => is_selinux_enabled();
    public int SecurityGetenforce() => security_getenforce();
    public int GetconRaw(byte** context) => getcon_raw(context);
    public int GetpeerconRaw(int fd, byte** context) => getpeercon_raw(fd, context);
    public int FGetfileconRaw(int fd, byte** context) => fgetfilecon_raw(fd, context);
    public int GetfileconRaw(byte* path, byte** context) => getfilecon_raw(path, context);
    public void Freecon(byte* context) => freecon(context);
    public ushort StringToSecurityClass(byte* name) => string_to_security_class(name);
    public uint StringToAvPerm(ushort securityClass, byte* permission) => string_to_av_perm(securityClass, permission);
    public int SecurityCheckContextRaw(byte* context) => security_check_context_raw(context);
    public int SecurityComputeAvFlagsRaw(byte* source, byte* target, ushort securityClass, uint requested, AvDecision* decision) =>
        security_compute_av_flags_raw(source, target, securityClass, requested, decision);
    public int SecurityComputeRelabelRaw(byte* source, byte* target, ushort securityClass, byte** newContext) =>
        security_compute_relabel_raw(source, target, securityClass, newContext);
    public int SetexecconRaw(byte* context) => setexeccon_raw(context);
    public int Execve(byte* path, byte** argv, byte** envp) => execve(path, argv, envp);
    public int LastError => Marshal.GetLastPInvokeError();

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int is_selinux_enabled();

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int security_getenforce();

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int getcon_raw(byte** context);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int getpeercon_raw(int fd, byte** context);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int fgetfilecon_raw(int fd, byte** context);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int getfilecon_raw(byte* path, byte** context);

    [LibraryImport(Lib)]
    private static partial void freecon(byte* context);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial ushort string_to_security_class(byte* name);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial uint string_to_av_perm(ushort securityClass, byte* permission);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int security_check_context_raw(byte* context);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int security_compute_av_flags_raw(byte* source, byte* target, ushort securityClass, uint requested, AvDecision* decision);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int security_compute_relabel_raw(byte* source, byte* target, ushort securityClass, byte** newContext);

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int setexeccon_raw(byte* context);

    [LibraryImport("libc.so.6", SetLastError = true)]
    private static partial int execve(byte* path, byte** argv, byte** envp);
}
