namespace Csvmm.Security;

/// <summary>
/// A source of SELinux policy decisions: the operations the entrypoint gate needs, with SELinux's
/// own semantics. Two implementations are intended:
/// <list type="bullet">
/// <item><see cref="SepolEngine"/>: libsepol evaluating a compiled binary policy file (hosts without SELinux).</item>
/// <item><see cref="SelinuxEngine"/>: libselinux for SELinux-enabled hosts, mapping 1:1 onto <c>string_to_security_class</c>,
/// <c>string_to_av_perm</c>, <c>security_check_context</c> (+ interning the string as a SID),
/// <c>security_compute_av_flags</c> and <c>security_compute_relabel</c>.</item>
/// </list>
/// Every method either answers or throws <see cref="SecurityPolicyException"/>; none ever reports
/// "allowed" for something it could not evaluate. Permissions are always resolved by name: their
/// bit numbers differ between policies.
/// </summary>
public interface IPolicyEngine
{
    /// <summary>What decides, for messages: e.g. <c>libsepol policy /usr/share/csvmm/policy.33</c>.</summary>
    string Description { get; }

    /// <summary>Resolves an object class by name. Throws <see cref="PolicyErrorKind.UnknownClass"/> if the policy lacks it.</summary>
    SecurityClass GetClass(string name);

    /// <summary>Resolves one permission of <paramref name="securityClass"/> by name to its access vector bit.</summary>
    uint GetPermission(SecurityClass securityClass, string permission);

    /// <summary>Validates <paramref name="context"/> against the policy and returns its SID.</summary>
    SecurityId GetSid(string context);

    /// <summary>The context string of a SID this engine issued.</summary>
    string GetContext(SecurityId sid);

    /// <summary>Computes which of <paramref name="requested"/> the policy allows <paramref name="source"/> on <paramref name="target"/>.</summary>
    AccessDecision ComputeAccess(SecurityId source, SecurityId target, SecurityClass securityClass, uint requested);

    /// <summary>
    /// Computes the relabel (type_change) result for <paramref name="source"/> acting on
    /// <paramref name="target"/> in <paramref name="securityClass"/>. Without a type_change rule
    /// SELinux returns the target's own type (not an error): callers compare.
    /// </summary>
    SecurityId ComputeTypeChange(SecurityId source, SecurityId target, SecurityClass securityClass);
}
