namespace Csvmm.Security;

/// <summary>
/// An engine-issued handle for a security context (libsepol's <c>sepol_security_id_t</c>;
/// <see cref="SelinuxEngine"/> interns context strings under engine-local numbers). Only pass a SID back to the engine
/// that issued it: libsepol silently maps an unknown SID to whatever context holds the
/// "unlabeled" number, so engines refuse SIDs they did not hand out or that predate a reload.
/// </summary>
/// <param name="Value">The engine's number for the context; 0 is never valid.</param>
/// <param name="Epoch">The policy load this SID belongs to.</param>
public readonly record struct SecurityId(uint Value, uint Epoch)
{
    /// <inheritdoc/>
    public override string ToString() => $"sid {Value} (load {Epoch})";
}

/// <summary>An object class resolved by name in one loaded policy (class numbers differ between policies).</summary>
/// <param name="Name">The class name, e.g. <c>vm</c>.</param>
/// <param name="Value">The policy's number for it (1-based, libsepol's <c>sepol_security_class_t</c>).</param>
/// <param name="Epoch">The policy load it was resolved in.</param>
public readonly record struct SecurityClass(string Name, ushort Value, uint Epoch)
{
    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Why a computed access vector lacks requested permissions (libsepol's SEPOL_COMPUTEAV_* bits).</summary>
[Flags]
public enum DenialCauses : uint
{
    /// <summary>Nothing denied.</summary>
    None = 0,
    /// <summary>No type enforcement allow rule grants the permission.</summary>
    TypeEnforcement = 0x1,
    /// <summary>A constraint (or MLS constraint) removes the permission.</summary>
    Constraint = 0x2,
    /// <summary>Role-based access control refuses it.</summary>
    Rbac = 0x4,
    /// <summary>A typebounds restriction masks it.</summary>
    Bounds = 0x8,
}

/// <summary>
/// The result of one access computation, as libsepol's <c>struct sepol_av_decision</c> (and
/// libselinux's <c>struct av_decision</c>) report it, plus the denial causes.
/// </summary>
/// <param name="Allowed">Permissions granted for the (source, target, class) triple.</param>
/// <param name="Decided">Permissions the policy decided (all bits, for a complete policy).</param>
/// <param name="AuditAllow">Granted permissions that are to be audited (auditallow rules).</param>
/// <param name="AuditDeny">Denied permissions that are to be audited (cleared by dontaudit rules).</param>
/// <param name="SequenceNumber">The policy sequence number of the decision.</param>
/// <param name="Causes">Why requested permissions are missing, when the engine reports it.</param>
/// <param name="ConstraintExplanation">libsepol's text of the failing constraint expression, if a constraint denied.</param>
/// <param name="PermissiveDomain">
/// The source domain is permissive (libselinux's <c>SELINUX_AVD_FLAGS_PERMISSIVE</c>, a <c>permissive</c> statement in
/// the kernel's policy): a denial is logged with permissive=1 and not enforced, even on an enforcing host.
/// </param>
public readonly record struct AccessDecision(
    uint Allowed, uint Decided, uint AuditAllow, uint AuditDeny, uint SequenceNumber,
    DenialCauses Causes = DenialCauses.None, string? ConstraintExplanation = null, bool PermissiveDomain = false)
{
    /// <summary>True when every bit of <paramref name="requested"/> is allowed (and <paramref name="requested"/> is not empty).</summary>
    public bool Grants(uint requested) => requested != 0 && (Allowed & requested) == requested;

    /// <summary>The bits of <paramref name="requested"/> that are not allowed.</summary>
    public uint Missing(uint requested) => requested & ~Allowed;
}

/// <summary>What kind of failure a <see cref="SecurityPolicyException"/> reports.</summary>
public enum PolicyErrorKind
{
    /// <summary>No usable policy: the file is missing, unreadable, corrupt, untrusted, or was replaced by a later load.</summary>
    PolicyUnavailable,
    /// <summary>The policy has no class of the requested name (e.g. <c>vm</c>).</summary>
    UnknownClass,
    /// <summary>The class has no permission of the requested name.</summary>
    UnknownPermission,
    /// <summary>A security context is malformed or not valid in the policy.</summary>
    InvalidContext,
    /// <summary>A SID was not issued by this engine, or belongs to an earlier policy load.</summary>
    InvalidSid,
    /// <summary>The engine failed to compute a decision.</summary>
    ComputationFailed,
    /// <summary>A file_contexts file is unreadable, untrusted or malformed.</summary>
    FileContextsInvalid,
    /// <summary>Re-executing csvmm in the VM's domain (setexeccon + execve) failed.</summary>
    TransitionFailed,
}

/// <summary>
/// A failure to reach a policy decision. Callers fail closed on it: <see cref="EntrypointGate"/>
/// turns every one into a denial carrying <see cref="Exception.Message"/> (one line) as the reason.
/// </summary>
public sealed class SecurityPolicyException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SecurityPolicyException(PolicyErrorKind kind, string message, Exception? inner = null)
        : base(message, inner) => Kind = kind;

    /// <summary>The kind of failure.</summary>
    public PolicyErrorKind Kind { get; }
}
