namespace Csvmm.Security;

/// <summary>How SELinux decisions take effect (as the kernel's enforcing/permissive/disabled states).</summary>
public enum EnforcementMode
{
    /// <summary>No checks: the policy is not consulted and every disk is allowed.</summary>
    Disabled,
    /// <summary>Decide and log exactly as enforcing, with permissive=1, but never refuse.</summary>
    Permissive,
    /// <summary>Decide, log, and refuse denied disks.</summary>
    Enforcing,
}

/// <summary>The state of one of the gate's three questions.</summary>
public enum CheckState
{
    /// <summary>Not evaluated (checks disabled, or an earlier failure made it impossible).</summary>
    NotEvaluated,
    /// <summary>The policy answers yes.</summary>
    Granted,
    /// <summary>The policy answers no.</summary>
    Denied,
}

/// <summary>One of the three questions and its answer.</summary>
/// <param name="State">The answer.</param>
/// <param name="AvcLine">The AVC-style log line of the decision (null when not evaluated).</param>
/// <param name="Reason">For a denial: what is missing, e.g. <c>no rule allow guest_t qemu_virtdisk_t:file { read }</c>.</param>
public readonly record struct GateCheck(CheckState State, string? AvcLine, string? Reason)
{
    /// <summary>A question that was not evaluated.</summary>
    public static GateCheck NotEvaluated => default;

    /// <summary>True when the policy answered yes.</summary>
    public bool Granted => State == CheckState.Granted;
}

/// <summary>
/// The gate's decision for one disk: the three answers (file read, type_change, entrypoint), the
/// VM context the disk leads to, and the overall verdict.
/// </summary>
public sealed record EntrypointDecision
{
    /// <summary>The disk's path (its real path when the label lookup resolved it).</summary>
    public required string DiskPath { get; init; }

    /// <summary>The context of the process loading the disk.</summary>
    public required string ProcessContext { get; init; }

    /// <summary>The disk's context, or null when it has no usable label.</summary>
    public string? DiskContext { get; init; }

    /// <summary>The mode the decision was made in.</summary>
    public required EnforcementMode Mode { get; init; }

    /// <summary>May the process read the disk (class file: read open getattr)?</summary>
    public GateCheck FileRead { get; init; }

    /// <summary>Does a type_change rule give the VM a type of its own?</summary>
    public GateCheck TypeChange { get; init; }

    /// <summary>May the disk be the entrypoint of the computed VM context (class vm: entrypoint)?</summary>
    public GateCheck Entrypoint { get; init; }

    /// <summary>
    /// The VM context the policy computes for (process, disk, vm). Without a type_change rule this
    /// is SELinux's fallback (the disk's own type), and <see cref="TypeChange"/> is denied.
    /// Null when not computed.
    /// </summary>
    public string? VmContext { get; init; }

    /// <summary>True when the policy grants all three and nothing failed: the verdict in enforcing mode (false when not evaluated).</summary>
    public bool PolicyAllows { get; init; }

    /// <summary>
    /// The verdict in <see cref="Mode"/>: <see cref="PolicyAllows"/> in enforcing mode (or a denial only of permissive
    /// domains, <see cref="PermissiveDomain"/>), always true otherwise. A failure is never allowed in enforcing mode.
    /// </summary>
    public bool Allowed => PolicyAllows || Mode != EnforcementMode.Enforcing || (PermissiveDomain && !Failed);

    /// <summary>
    /// True when the policy denies, but every denied question's source domain is permissive (libselinux's
    /// SELINUX_AVD_FLAGS_PERMISSIVE): SELinux logs such denials with permissive=1 and does not enforce them.
    /// </summary>
    public bool PermissiveDomain { get; init; }

    /// <summary>True when the decision could not be computed (no policy, invalid context, class vm absent, no label...).</summary>
    public bool Failed { get; init; }

    /// <summary>Why the policy does not allow the disk (one line), or null when it does.</summary>
    public string? DenialReason { get; init; }

    /// <summary>The AVC lines of the evaluated checks, in order.</summary>
    public IEnumerable<string> AvcLines =>
        new[] { FileRead.AvcLine, TypeChange.AvcLine, Entrypoint.AvcLine }.OfType<string>();

    /// <summary>A short human report: one line per question, for <c>csvmm check</c>.</summary>
    public IReadOnlyList<string> Describe()
    {
        static string State(GateCheck c) => c.State switch
        {
            CheckState.Granted => "granted",
            CheckState.Denied => "DENIED: " + c.Reason,
            _ => "not evaluated",
        };
        return
        [
            $"disk:       {DiskPath}",
            $"label:      {DiskContext ?? "(none)"}",
            $"process:    {ProcessContext}",
            $"file read:  {State(FileRead)}",
            $"vm context: {VmContext ?? "(none)"}{(TypeChange.State == CheckState.Denied ? " (DENIED: " + TypeChange.Reason + ")" : "")}",
            $"entrypoint: {State(Entrypoint)}",
            Mode == EnforcementMode.Disabled
                ? "verdict:    not checked (SELinux checks disabled)"
                : $"verdict:    {(PolicyAllows ? "allowed" : "denied")} ({Mode.ToString().ToLowerInvariant()}{(Allowed && !PolicyAllows ? (Mode == EnforcementMode.Enforcing ? ", permissive domain: not enforced" : ", not enforced") : "")})"
                    + (DenialReason is null ? "" : ": " + DenialReason),
        ];
    }
}

/// <summary>The verdict for all disks of one VM.</summary>
public sealed record VmDecision
{
    /// <summary>The per-disk decisions, in the order given.</summary>
    public required IReadOnlyList<EntrypointDecision> Disks { get; init; }

    /// <summary>The mode of the decision.</summary>
    public required EnforcementMode Mode { get; init; }

    /// <summary>The one VM context every disk leads to; null when there are no disks, checks are disabled, or the disks disagree.</summary>
    public string? VmContext { get; init; }

    /// <summary>True when the policy allows every disk and they agree on the VM context.</summary>
    public bool PolicyAllows { get; init; }

    /// <summary>The verdict in <see cref="Mode"/> (a denial only of permissive domains is not enforced).</summary>
    public bool Allowed => PolicyAllows || Mode != EnforcementMode.Enforcing || PermissiveDomain;

    /// <summary>True when every denied disk was denied only in permissive domains and the disks agree on the VM context.</summary>
    public bool PermissiveDomain { get; init; }

    /// <summary>Why the VM is denied (one line), or null.</summary>
    public string? DenialReason { get; init; }
}
