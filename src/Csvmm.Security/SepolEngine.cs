using System.Runtime.InteropServices;
using Csvmm.Security.Native;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>
/// Policy decisions from a compiled binary policy file, evaluated by libsepol: the engine for hosts
/// whose kernel has no SELinux. The decisions are libsepol's own (the same code the policy tools
/// use), not a reimplementation.
/// <para>
/// libsepol holds ONE process-wide policy and SID table and does no locking of its own, so:
/// every call on every instance is serialised by one global lock; <see cref="Load"/> replaces that
/// global policy, after which every earlier engine is stale and refuses all calls (its SIDs would
/// now name other contexts) — load once per process, first, in production. A failed load leaves
/// no usable policy at all: libsepol has already discarded the previous one.
/// </para>
/// <para>
/// libsepol silently maps an unknown SID to the context that happens to own the "unlabeled"
/// number; this engine therefore accepts only SIDs it issued itself under the current load.
/// </para>
/// </summary>
public sealed unsafe class SepolEngine : IPolicyEngine
{
    private static readonly Lock s_lock = new();
    private static uint s_lastEpoch;
    private static SepolEngine? s_current;

    private readonly uint _epoch;
    private readonly HashSet<uint> _issued = [];

    private SepolEngine(string path, uint epoch)
    {
        PolicyPath = path;
        _epoch = epoch;
    }

    /// <summary>The absolute path of the loaded policy file.</summary>
    public string PolicyPath { get; }

    /// <inheritdoc/>
    public string Description => $"libsepol policy {PolicyPath}";

    /// <summary>False once a later <see cref="Load"/> (successful or not) replaced libsepol's global policy.</summary>
    public bool IsCurrent
    {
        get { lock (s_lock) return ReferenceEquals(s_current, this); }
    }

    /// <summary>
    /// Loads <paramref name="policyPath"/> into libsepol (replacing any policy loaded before) and
    /// returns the engine for it. The file is opened once; <paramref name="trust"/> is checked on
    /// that open descriptor, so the file checked is the file read.
    /// </summary>
    /// <exception cref="SecurityPolicyException">Missing, unreadable, untrusted or corrupt policy (<see cref="PolicyErrorKind.PolicyUnavailable"/>).</exception>
    public static SepolEngine Load(string policyPath, FileTrust trust = FileTrust.Any)
    {
        ArgumentException.ThrowIfNullOrEmpty(policyPath);
        string path = Path.GetFullPath(policyPath);
        byte[] cpath = Utf8.ToCString(path)
            ?? throw Unavailable($"SELinux policy path {path} contains a NUL byte");
        byte* mode = stackalloc byte[] { (byte)'r', (byte)'e', 0 }; // "re": O_CLOEXEC

        lock (s_lock)
        {
            LibSepol.Debug(0);
            nint file;
            fixed (byte* p = cpath)
                file = LibCFiles.FOpen(p, mode);
            if (file == 0)
                throw Unavailable($"cannot open SELinux policy {path}: {LibCFiles.ErrorText(Marshal.GetLastPInvokeError())}");
            int rc;
            try
            {
                if (!TrustedFile.TryFStat(LibCFiles.FileNo(file), out LinuxStat st, out string statError))
                    throw Unavailable($"cannot check SELinux policy {path}: {statError}");
                if (TrustedFile.Violation(st, trust) is { } violation)
                    throw Unavailable($"refusing SELinux policy {path}: {violation}");
                if (st.Size == 0)
                    throw Unavailable($"SELinux policy {path} is empty");

                // From here on libsepol's previous policy is gone, whatever the outcome.
                s_current = null;
                s_lastEpoch = checked(s_lastEpoch + 1);
                rc = LibSepol.SetPolicydbFromFile(file);
            }
            finally
            {
                LibCFiles.FClose(file);
            }
            if (rc != 0)
                throw Unavailable($"SELinux policy {path} is not a valid binary policy (corrupt, truncated, or not a kernel policy)");

            var engine = new SepolEngine(path, s_lastEpoch);
            s_current = engine;
            return engine;
        }
    }

    /// <inheritdoc/>
    public SecurityClass GetClass(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        byte[] cname = Utf8.ToCString(name) ?? throw NoClass(name);
        lock (s_lock)
        {
            EnsureCurrent();
            ushort value;
            int rc;
            fixed (byte* p = cname)
                rc = LibSepol.StringToSecurityClass(p, &value);
            if (rc != 0 || value == 0)
                throw NoClass(name);
            return new SecurityClass(name, value, _epoch);
        }
    }

    /// <inheritdoc/>
    public uint GetPermission(SecurityClass securityClass, string permission)
    {
        ArgumentNullException.ThrowIfNull(permission);
        byte[] cperm = Utf8.ToCString(permission) ?? throw NoPermission(securityClass, permission);
        lock (s_lock)
        {
            EnsureCurrent();
            EnsureClass(securityClass);
            uint av;
            int rc;
            fixed (byte* p = cperm)
                rc = LibSepol.StringToAvPerm(securityClass.Value, p, &av);
            if (rc != 0 || av == 0)
                throw NoPermission(securityClass, permission);
            return av;
        }
    }

    /// <inheritdoc/>
    public SecurityId GetSid(string context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (SecurityContext.ShapeError(context) is { } shape)
            throw InvalidContext(context, shape);
        byte[] ccontext = Utf8.ToCString(context)!;
        lock (s_lock)
        {
            EnsureCurrent();
            uint sid;
            int rc;
            fixed (byte* p = ccontext)
                rc = LibSepol.ContextToSid(p, (nuint)(ccontext.Length - 1), &sid);
            if (rc != 0 || sid == 0)
                throw InvalidContext(context,
                    "unknown user, role or type, a role not authorised for the user or the type, or an MLS level the policy does not have");
            _issued.Add(sid);
            return new SecurityId(sid, _epoch);
        }
    }

    /// <inheritdoc/>
    public string GetContext(SecurityId sid)
    {
        lock (s_lock)
        {
            EnsureCurrent();
            EnsureSid(sid);
            byte* text = null;
            nuint length = 0;
            int rc = LibSepol.SidToContext(sid.Value, &text, &length);
            try
            {
                if (rc != 0 || text == null)
                    throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed,
                        $"libsepol cannot convert {sid} back to a context (policy {PolicyPath}, rc {rc})");
                return Utf8.FromCString(text, length);
            }
            finally
            {
                LibCFiles.Free(text);
            }
        }
    }

    /// <inheritdoc/>
    public AccessDecision ComputeAccess(SecurityId source, SecurityId target, SecurityClass securityClass, uint requested)
    {
        lock (s_lock)
        {
            EnsureCurrent();
            EnsureSid(source);
            EnsureSid(target);
            EnsureClass(securityClass);
            SepolAvDecision avd;
            uint reason = 0;
            byte* buffer = null;
            int rc = LibSepol.ComputeAvReasonBuffer(source.Value, target.Value, securityClass.Value, requested,
                &avd, &reason, &buffer, 0);
            try
            {
                if (rc != 0)
                    throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed,
                        $"libsepol cannot compute access for class {securityClass.Name} (policy {PolicyPath}, rc {rc})");
                string? explanation = buffer == null ? null : OneLine(Utf8.FromCString(buffer));
                return new AccessDecision(avd.Allowed, avd.Decided, avd.AuditAllow, avd.AuditDeny, avd.SeqNo,
                    (DenialCauses)(reason & 0xF), string.IsNullOrEmpty(explanation) ? null : explanation);
            }
            finally
            {
                LibCFiles.Free(buffer);
            }
        }
    }

    /// <inheritdoc/>
    public SecurityId ComputeTypeChange(SecurityId source, SecurityId target, SecurityClass securityClass)
    {
        lock (s_lock)
        {
            EnsureCurrent();
            EnsureSid(source);
            EnsureSid(target);
            EnsureClass(securityClass);
            uint result;
            int rc = LibSepol.ChangeSid(source.Value, target.Value, securityClass.Value, &result);
            if (rc != 0 || result == 0)
                throw new SecurityPolicyException(PolicyErrorKind.ComputationFailed, rc == -13
                    ? $"the type_change result for class {securityClass.Name} is not a valid context in policy {PolicyPath}"
                    : $"libsepol cannot compute the type_change for class {securityClass.Name} (policy {PolicyPath}, rc {rc})");
            _issued.Add(result);
            return new SecurityId(result, _epoch);
        }
    }

    private void EnsureCurrent()
    {
        if (!ReferenceEquals(s_current, this))
            throw Unavailable($"SELinux policy {PolicyPath} was replaced by a later policy load in this process; its decisions and SIDs are void");
    }

    private void EnsureSid(SecurityId sid)
    {
        if (sid.Epoch != _epoch || !_issued.Contains(sid.Value))
            throw new SecurityPolicyException(PolicyErrorKind.InvalidSid,
                $"{sid} was not issued by the current load of {PolicyPath}");
    }

    private void EnsureClass(SecurityClass securityClass)
    {
        if (securityClass.Epoch != _epoch || securityClass.Value == 0)
            throw new SecurityPolicyException(PolicyErrorKind.UnknownClass,
                $"class {securityClass.Name} was not resolved in the current load of {PolicyPath}");
    }

    private static string OneLine(string s) => string.Join(' ', s.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)).Trim();

    private static SecurityPolicyException Unavailable(string message) => new(PolicyErrorKind.PolicyUnavailable, message);

    private SecurityPolicyException NoClass(string name) =>
        new(PolicyErrorKind.UnknownClass, $"SELinux policy {PolicyPath} has no class '{name}'");

    private SecurityPolicyException NoPermission(SecurityClass securityClass, string permission) =>
        new(PolicyErrorKind.UnknownPermission, $"class {securityClass.Name} in SELinux policy {PolicyPath} has no permission '{permission}'");

    private SecurityPolicyException InvalidContext(string context, string why) =>
        new(PolicyErrorKind.InvalidContext, $"invalid security context '{AvcFormat.Printable(context)}' for SELinux policy {PolicyPath}: {why}");
}
