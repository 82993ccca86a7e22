using Csvmm.Security.Native;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>
/// Policy decisions from the running kernel's SELinux policy, through libselinux: the engine for hosts
/// with SELinux enabled. Every method maps onto one libselinux call:
/// <list type="bullet">
/// <item><see cref="GetClass"/>: <c>string_to_security_class</c> (0: the kernel's policy has no such class — fail closed;
/// with <c>handle_unknown=allow</c> the kernel would otherwise allow everything on an unknown class);</item>
/// <item><see cref="GetPermission"/>: <c>string_to_av_perm</c>;</item>
/// <item><see cref="GetSid"/>: <c>security_check_context_raw</c>, then the context string is interned under an engine-local number
/// (libselinux's computation calls take strings; there are no kernel SIDs in userspace);</item>
/// <item><see cref="ComputeAccess"/>: <c>security_compute_av_flags_raw</c> — the kernel's access vector plus the
/// per-domain permissive flag, which <c>selinux_check_access</c>/<c>avc_has_perm</c> consult underneath but do not
/// return (and <c>selinux_check_access</c> answers 0 both when SELinux is disabled and for an unknown class);</item>
/// <item><see cref="ComputeTypeChange"/>: <c>security_compute_relabel_raw</c>. Without a type_change rule the kernel
/// answers with the target's own type, not an error: <see cref="EntrypointGate"/> compares and denies.</item>
/// </list>
/// Every libselinux failure becomes a <see cref="SecurityPolicyException"/> with errno's text; no failure ever reads as
/// "allowed". libselinux does not say why permissions are missing (no reason bits), so denials carry
/// <see cref="DenialCauses.None"/>. Thread-safe.
/// </summary>
public sealed unsafe class SelinuxEngine : IPolicyEngine
{
    private static uint s_lastEpoch;

    private readonly ILibSelinux _lib;
    private readonly uint _epoch;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, uint> _sidOf = new(StringComparer.Ordinal);
    private readonly List<string> _contexts = [];

    private SelinuxEngine(ILibSelinux lib, uint epoch)
    {
        _lib = lib;
        _epoch = epoch;
    }

    /// <inheritdoc/>
    public string Description => "the kernel's SELinux policy (libselinux)";

    /// <summary>
    /// The engine over the real libselinux.so.1. Refuses (fail closed) unless <c>is_selinux_enabled()</c> is 1:
    /// without SELinux libselinux's answers are not decisions.
    /// </summary>
    /// <exception cref="SecurityPolicyException"><see cref="PolicyErrorKind.PolicyUnavailable"/>.</exception>
    public static SelinuxEngine Open()
    {
        try
        {
            return Open(LibSelinuxNative.Instance);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw Unavailable($"libselinux.so.1 is not usable: {e.Message}");
        }
    }

    /// <summary>The engine over <paramref name="lib"/> (a fake native layer in tests).</summary>
    internal static SelinuxEngine Open(ILibSelinux lib)
    {
        ArgumentNullException.ThrowIfNull(lib);
        int enabled = lib.IsSelinuxEnabled();
        if (enabled != 1)
            throw Unavailable(enabled == 0
                ? "is_selinux_enabled() = 0: no SELinux in this kernel, so there is no kernel policy to decide with"
                : $"is_selinux_enabled() failed ({enabled}): {LibCFiles.ErrorText(lib.LastError)}");
        return new SelinuxEngine(lib, Interlocked.Increment(ref s_lastEpoch));
    }

    /// <inheritdoc/>
    public SecurityClass GetClass(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        byte[] cname = Utf8.ToCString(name) ?? throw NoClass(name, "the name contains a NUL character");
        ushort value;
        int errno;
        fixed (byte* p = cname)
        {
            value = _lib.StringToSecurityClass(p);
            errno = _lib.LastError;
        }
        if (value == 0)
            throw NoClass(name, $"string_to_security_class: {LibCFiles.ErrorText(errno)}");
        return new SecurityClass(name, value, _epoch);
    }

    /// <inheritdoc/>
    public uint GetPermission(SecurityClass securityClass, string permission)
    {
        ArgumentNullException.ThrowIfNull(permission);
        EnsureClass(securityClass);
        byte[] cperm = Utf8.ToCString(permission) ?? throw NoPermission(securityClass, permission);
        uint av;
        fixed (byte* p = cperm)
            av = _lib.StringToAvPerm(securityClass.Value, p);
        if (av == 0)
            throw NoPermission(securityClass, permission);
        return av;
    }

    /// <inheritdoc/>
    public SecurityId GetSid(string context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (SecurityContext.ShapeError(context) is { } shape)
            throw InvalidContext(context, shape);
        lock (_lock)
        {
            if (_sidOf.TryGetValue(context, out uint known))
                return new SecurityId(known, _epoch);
        }
        byte[] ccontext = Utf8.ToCString(context)!;
        int rc, errno;
        fixed (byte* p = ccontext)
        {
            rc = _lib.SecurityCheckContextRaw(p);
            errno = _lib.LastError;
        }
        if (rc != 0)
            throw InvalidContext(context, $"security_check_context: {LibCFiles.ErrorText(errno)}");
        return Intern(context);
    }

    /// <inheritdoc/>
    public string GetContext(SecurityId sid)
    {
        lock (_lock)
            return ContextOf(sid);
    }

    /// <inheritdoc/>
    public AccessDecision ComputeAccess(SecurityId source, SecurityId target, SecurityClass securityClass, uint requested)
    {
        EnsureClass(securityClass);
        string scon, tcon;
        lock (_lock)
        {
            scon = ContextOf(source);
            tcon = ContextOf(target);
        }
        byte[] cs = Utf8.ToCString(scon)!, ct = Utf8.ToCString(tcon)!;
        AvDecision avd = default;
        int rc, errno;
        fixed (byte* ps = cs)
        fixed (byte* pt = ct)
        {
            rc = _lib.SecurityComputeAvFlagsRaw(ps, pt, securityClass.Value, requested, &avd);
            errno = _lib.LastError;
        }
        if (rc != 0)
            throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed,
                $"security_compute_av_flags({scon}, {tcon}, {securityClass.Name}) failed: {LibCFiles.ErrorText(errno)}");
        // The kernel's decision must cover what was asked: an undecided bit is not an allowed bit.
        uint allowed = avd.Allowed & avd.Decided;
        return new AccessDecision(allowed, avd.Decided, avd.AuditAllow, avd.AuditDeny, avd.SeqNo,
            (requested & ~allowed) != 0 ? DenialCauses.TypeEnforcement : DenialCauses.None, null,
            PermissiveDomain: (avd.Flags & AvDecision.FlagsPermissive) != 0);
    }

    /// <inheritdoc/>
    public SecurityId ComputeTypeChange(SecurityId source, SecurityId target, SecurityClass securityClass)
    {
        EnsureClass(securityClass);
        string scon, tcon;
        lock (_lock)
        {
            scon = ContextOf(source);
            tcon = ContextOf(target);
        }
        byte[] cs = Utf8.ToCString(scon)!, ct = Utf8.ToCString(tcon)!;
        byte* result = null;
        int rc, errno;
        fixed (byte* ps = cs)
        fixed (byte* pt = ct)
        {
            rc = _lib.SecurityComputeRelabelRaw(ps, pt, securityClass.Value, &result);
            errno = _lib.LastError;
        }
        string? context = SelinuxStrings.Take(_lib, result);
        if (rc != 0 || context is null)
            throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed,
                $"security_compute_relabel({scon}, {tcon}, {securityClass.Name}) failed: " +
                (rc != 0 ? LibCFiles.ErrorText(errno) : "no context returned"));
        if (SecurityContext.ShapeError(context) is { } shape)
            throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed,
                $"security_compute_relabel returned '{AvcFormat.Printable(context)}', which is not a security context: {shape}");
        return Intern(context);
    }

    private SecurityId Intern(string context)
    {
        lock (_lock)
        {
            if (!_sidOf.TryGetValue(context, out uint sid))
            {
                _contexts.Add(context);
                sid = (uint)_contexts.Count;
                _sidOf.Add(context, sid);
            }
            return new SecurityId(sid, _epoch);
        }
    }

    private string ContextOf(SecurityId sid)
    {
        if (sid.Epoch != _epoch || sid.Value == 0 || sid.Value > (uint)_contexts.Count)
            throw new SecurityPolicyException(PolicyErrorKind.InvalidSid, $"{sid} was not issued by this libselinux engine");
        return _contexts[(int)sid.Value - 1];
    }

    private void EnsureClass(SecurityClass securityClass)
    {
        if (securityClass.Epoch != _epoch || securityClass.Value == 0)
            throw new SecurityPolicyException(PolicyErrorKind.UnknownClass,
                $"class {securityClass.Name} was not resolved by this libselinux engine");
    }

    private static SecurityPolicyException Unavailable(string message) => new(PolicyErrorKind.PolicyUnavailable, message);

    private static SecurityPolicyException NoClass(string name, string detail) =>
        new(PolicyErrorKind.UnknownClass,
            $"the kernel's SELinux policy has no class '{AvcFormat.Printable(name)}' ({detail}); install csvmm's module: semodule -i policy/csvmm.cil");

    private static SecurityPolicyException NoPermission(SecurityClass securityClass, string permission) =>
        new(PolicyErrorKind.UnknownPermission,
            $"class {securityClass.Name} in the kernel's SELinux policy has no permission '{AvcFormat.Printable(permission)}'");

    private static SecurityPolicyException InvalidContext(string context, string why) =>
        new(PolicyErrorKind.InvalidContext, $"invalid security context '{AvcFormat.Printable(context)}' for the kernel's SELinux policy: {why}");
}

/// <summary>Contexts handed out by libselinux: copied into managed strings and released with freecon.</summary>
internal static unsafe class SelinuxStrings
{
    /// <summary>Copies <paramref name="context"/> (null: none) and frees it with <c>freecon</c>, whatever it holds.</summary>
    internal static string? Take(ILibSelinux lib, byte* context)
    {
        if (context == null)
            return null;
        try
        {
            return Utf8.FromCString(context);
        }
        finally
        {
            lib.Freecon(context);
        }
    }
}
