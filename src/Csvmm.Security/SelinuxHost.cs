using Csvmm.Security.Native;
using Microsoft.Win32.SafeHandles;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>Whether the host kernel runs SELinux.</summary>
public enum HostSelinux
{
    /// <summary>No SELinux: libselinux's is_selinux_enabled() says 0 (or libselinux is missing and so is /sys/fs/selinux).</summary>
    Absent,
    /// <summary>SELinux is enabled: the kernel's policy, through libselinux, must decide.</summary>
    Enabled,
}

/// <summary>What <see cref="SelinuxHost.Probe()"/> found.</summary>
/// <param name="State">Whether SELinux is enabled (also <see cref="HostSelinux.Enabled"/> when that cannot be determined: fail closed).</param>
/// <param name="KernelEnforcing"><c>security_getenforce()</c>: true enforcing, false permissive, null unknown (SELinux absent, or the call failed).</param>
/// <param name="ProcessContext"><c>getcon_raw()</c>: this process's context; null when SELinux is absent or the call failed.</param>
/// <param name="Explanation">One line for the log, naming the calls and their answers.</param>
/// <param name="ProcessContextError">Why <paramref name="ProcessContext"/> is null on an SELinux host.</param>
public sealed record SelinuxHostState(HostSelinux State, bool? KernelEnforcing, string? ProcessContext, string Explanation,
    string? ProcessContextError = null)
{
    /// <summary>True when SELinux is (or must be assumed) enabled.</summary>
    public bool Enabled => State == HostSelinux.Enabled;
}

/// <summary>Asks libselinux about the host: is SELinux on, enforcing or permissive, which domain this process runs in, and how a file is labelled.</summary>
public static unsafe class SelinuxHost
{
    /// <summary>The selinuxfs mount point.</summary>
    public const string SelinuxFs = "/sys/fs/selinux";

    /// <summary>Probes the host through the real libselinux.so.1.</summary>
    public static SelinuxHostState Probe() => Probe(LibSelinuxNative.Instance, Directory.Exists(SelinuxFs));

    /// <summary>
    /// Probes through <paramref name="lib"/>: <c>is_selinux_enabled()</c> decides (0: absent). When libselinux cannot
    /// be loaded, a host with <paramref name="selinuxFsExists"/> is taken as SELinux-enabled (fail closed: every
    /// decision will then fail), one without as absent. -1 from is_selinux_enabled() is also taken as enabled.
    /// </summary>
    internal static SelinuxHostState Probe(ILibSelinux lib, bool selinuxFsExists)
    {
        ArgumentNullException.ThrowIfNull(lib);
        string noFs = selinuxFsExists ? "" : $" (no {SelinuxFs})";
        int enabled;
        try
        {
            enabled = lib.IsSelinuxEnabled();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return selinuxFsExists
                ? new(HostSelinux.Enabled, null, null,
                    $"{SelinuxFs} exists but libselinux.so.1 is not usable ({e.Message}): assuming SELinux is enabled (fail closed)",
                    "libselinux.so.1 is not usable")
                : new(HostSelinux.Absent, null, null, $"libselinux.so.1 is not usable ({e.Message}); no SELinux in this kernel{noFs}");
        }
        if (enabled == 0)
            return new(HostSelinux.Absent, null, null, $"is_selinux_enabled() = 0: no SELinux in this kernel{noFs}");
        if (enabled < 0)
        {
            string error = LibCFiles.ErrorText(lib.LastError);
            return new(HostSelinux.Enabled, null, null,
                $"is_selinux_enabled() failed ({error}): assuming SELinux is enabled (fail closed)", "is_selinux_enabled() failed: " + error);
        }

        int enforce = lib.SecurityGetenforce();
        string enforceText = enforce switch
        {
            1 => "security_getenforce() = 1 (enforcing)",
            0 => "security_getenforce() = 0 (permissive)",
            _ => $"security_getenforce() failed ({LibCFiles.ErrorText(lib.LastError)})",
        };
        bool? kernelEnforcing = enforce switch { 1 => true, 0 => false, _ => null };

        byte* raw = null;
        int rc = lib.GetconRaw(&raw);
        int errno = lib.LastError;
        string? context = SelinuxStrings.Take(lib, raw);
        string? contextError = null;
        if (rc != 0 || context is null)
        {
            contextError = "getcon() failed: " + (rc != 0 ? LibCFiles.ErrorText(errno) : "no context returned");
            context = null;
        }
        else if (SecurityContext.ShapeError(context) is { } shape)
        {
            contextError = $"getcon() returned '{AvcFormat.Printable(context)}', which is not a security context: {shape}";
            context = null;
        }
        return new(HostSelinux.Enabled, kernelEnforcing, context,
            $"is_selinux_enabled() = {enabled}, {enforceText}, {(context is null ? contextError : "getcon() = " + context)}", contextError);
    }

    /// <summary>
    /// For callers that only need the yes/no: <see cref="Probe()"/>'s state and explanation.
    /// </summary>
    public static (HostSelinux State, string Detail) Detect()
    {
        SelinuxHostState s = Probe();
        return (s.State, s.Explanation);
    }

    /// <summary>This process's context (<c>getcon_raw</c>), or a <see cref="SecurityPolicyException"/> saying why not.</summary>
    public static string CurrentContext() => CurrentContext(LibSelinuxNative.Instance);

    internal static string CurrentContext(ILibSelinux lib)
    {
        byte* raw = null;
        int rc = lib.GetconRaw(&raw);
        int errno = lib.LastError;
        string? context = SelinuxStrings.Take(lib, raw);
        if (rc != 0 || context is null)
            throw new SecurityPolicyException(PolicyErrorKind.InvalidContext,
                "getcon() failed: " + (rc != 0 ? LibCFiles.ErrorText(errno) : "no context returned"));
        return context;
    }

    /// <summary>
    /// The context of the peer of a connected Unix socket (<c>getpeercon_raw</c>: the kernel's label of the client
    /// process, taken when it connected), or a <see cref="SecurityPolicyException"/> saying why not.
    /// </summary>
    public static string PeerContext(int socketFd) => PeerContext(LibSelinuxNative.Instance, socketFd);

    internal static string PeerContext(ILibSelinux lib, int socketFd)
    {
        byte* raw = null;
        int rc = lib.GetpeerconRaw(socketFd, &raw);
        int errno = lib.LastError;
        string? context = SelinuxStrings.Take(lib, raw);
        if (rc != 0 || context is null)
            throw new SecurityPolicyException(PolicyErrorKind.InvalidContext,
                "getpeercon() failed: " + (rc != 0 ? LibCFiles.ErrorText(errno) : "no context returned"));
        return context;
    }

    /// <summary>
    /// The kernel's label of an opened disk: <c>fgetfilecon_raw</c> on the descriptor. On an SELinux host this label is
    /// the kernel's (changing it is itself policy-checked), unlike a security.selinux attribute on a host without SELinux.
    /// An O_PATH descriptor makes fgetxattr fail with EBADF in libselinux before 3.5 (Debian 12 ships 3.4), so on EBADF
    /// the label is read with <c>getfilecon_raw("/proc/self/fd/N")</c>: that magic link names the very file the
    /// descriptor refers to (no path lookup race), as libselinux 3.5's own O_PATH emulation does.
    /// </summary>
    public static DiskLabel FileLabel(SafeFileHandle handle, string path) => FileLabel(LibSelinuxNative.Instance, handle, path);

    internal static DiskLabel FileLabel(ILibSelinux lib, SafeFileHandle handle, string path)
    {
        ArgumentNullException.ThrowIfNull(handle);
        const string source = "SELinux file label (fgetfilecon)";
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            byte* raw = null;
            int rc = lib.FGetfileconRaw(fd, &raw);
            int errno = rc < 0 ? lib.LastError : 0;
            string? context = SelinuxStrings.Take(lib, raw);
            if (rc < 0 && errno == Errno.Ebadf)
            {
                byte[] procPath = Utf8.ToCString($"/proc/self/fd/{fd}")!;
                raw = null;
                fixed (byte* p = procPath)
                {
                    rc = lib.GetfileconRaw(p, &raw);
                    errno = rc < 0 ? lib.LastError : 0;
                }
                context = SelinuxStrings.Take(lib, raw);
            }
            if (rc < 0 || context is null)
                return DiskLabel.Unlabelled(path, source, rc < 0
                    ? $"cannot read the SELinux label of {path}: {LibCFiles.ErrorText(errno)}"
                    : $"cannot read the SELinux label of {path}: no context returned");
            return SecurityContext.TryParse(context, out _)
                ? DiskLabel.Labelled(path, context, source)
                : DiskLabel.Unlabelled(path, source, $"the SELinux label of {path} is not a security context");
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }
}
