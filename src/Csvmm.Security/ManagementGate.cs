namespace Csvmm.Security;

/// <summary>A management operation on a running VM, each its own permission of class <c>vm</c>.</summary>
public enum VmOperation
{
    /// <summary>Read-only queries (QMP query-*, capabilities negotiation).</summary>
    Query,
    /// <summary>Run-state changes: stop, cont, system_reset, system_powerdown, quit.</summary>
    Control,
    /// <summary>Write the VM's state to a snapshot.</summary>
    Save,
    /// <summary>Start a VM from a snapshot.</summary>
    Restore,
    /// <summary>Send the running VM to another csvmm.</summary>
    MigrateOut,
    /// <summary>Receive a VM from another csvmm.</summary>
    MigrateIn,
}

/// <summary>One management decision: whether the operation may go ahead, and the AVC line that records it.</summary>
/// <param name="PolicyAllows">The policy grants the permission.</param>
/// <param name="Allowed">The operation may go ahead: granted, or a denial that is not enforced (permissive mode or a
/// permissive domain), or checks disabled.</param>
/// <param name="AvcLine">The AVC-style record (null when checks are disabled).</param>
/// <param name="DenialReason">Why the policy denies, or why it could not decide; null when granted.</param>
public sealed record ManagementDecision(bool PolicyAllows, bool Allowed, string? AvcLine, string? DenialReason);

/// <summary>
/// Mandatory access control on VM management: may the domain <c>source</c> perform an operation on this VM, i.e. does
/// the policy have <c>allow &lt;source&gt; &lt;vm type&gt;:vm &lt;permission&gt;</c>. The VM's context is the one
/// the entrypoint gate computed for its disks (or csvmm's own context for a VM started without a disk). Decided with
/// the same engines as the entrypoint (libsepol offline, libselinux on an SELinux host), in the same mode; anything
/// the engine cannot evaluate (a policy without the permission, an invalid context) is a denial with its reason.
/// </summary>
public sealed class ManagementGate
{
    private readonly IPolicyEngine _engine;
    private readonly AvcOrigin _origin;

    /// <param name="engine">Decides.</param>
    /// <param name="mode">Enforcing: denials refuse the operation; permissive: logged, allowed; disabled: not checked.</param>
    /// <param name="vmContext">The VM's context: the target of every decision.</param>
    /// <param name="origin">The process named in AVC lines.</param>
    /// <param name="processContext">csvmm's own context, the writer of snapshot files (null: <see cref="CheckSnapshotWrite"/> is the kernel's).</param>
    /// <param name="fileLabel">The label a file at a path has or would get (file_contexts), for <see cref="CheckSnapshotWrite"/>.</param>
    public ManagementGate(IPolicyEngine engine, EnforcementMode mode, string vmContext, AvcOrigin origin,
        string? processContext = null, Func<string, DiskLabel>? fileLabel = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(vmContext);
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown enforcement mode");
        _engine = engine;
        Mode = mode;
        VmContext = vmContext;
        _origin = origin;
        _processContext = processContext;
        _fileLabel = fileLabel;
    }

    private readonly string? _processContext;
    private readonly Func<string, DiskLabel>? _fileLabel;

    /// <summary>The enforcement mode.</summary>
    public EnforcementMode Mode { get; }

    /// <summary>Where every decision's AVC line also goes (the audit system on an SELinux host), or null.</summary>
    public IAvcAudit? Audit { get; init; }

    private ManagementDecision Audited(ManagementDecision d)
    {
        if (d.AvcLine is { } line) Audit?.UserAvc(line);
        return d;
    }

    /// <summary>The VM's context (the target of every decision).</summary>
    public string VmContext { get; }

    /// <summary>The permission of class vm that <paramref name="operation"/> needs.</summary>
    public static string PermissionFor(VmOperation operation) => operation switch
    {
        VmOperation.Query => "query",
        VmOperation.Control => "control",
        VmOperation.Save => "save",
        VmOperation.Restore => "restore",
        VmOperation.MigrateOut => "migrate_out",
        VmOperation.MigrateIn => "migrate_in",
        _ => throw new ArgumentOutOfRangeException(nameof(operation), operation, "unknown operation"),
    };

    /// <summary>
    /// Decides whether <paramref name="sourceContext"/> may perform <paramref name="operation"/> on the VM.
    /// <paramref name="what"/> names the request in the AVC line's path field (e.g. <c>qmp:stop</c>).
    /// </summary>
    public ManagementDecision Check(string sourceContext, VmOperation operation, string what)
    {
        ArgumentNullException.ThrowIfNull(sourceContext);
        ArgumentNullException.ThrowIfNull(what);
        string permission = PermissionFor(operation);
        if (Mode == EnforcementMode.Disabled) return new ManagementDecision(true, true, null, null);
        bool permissive = Mode == EnforcementMode.Permissive;
        try
        {
            SecurityClass vm = _engine.GetClass(EntrypointGate.VmClass);
            uint bit = _engine.GetPermission(vm, permission);
            AccessDecision d = _engine.ComputeAccess(_engine.GetSid(sourceContext), _engine.GetSid(VmContext), vm, bit);
            bool granted = d.Grants(bit);
            bool notEnforced = permissive || d.PermissiveDomain;
            string line = AvcFormat.Line(granted, [permission], _origin, what, sourceContext, VmContext, EntrypointGate.VmClass, notEnforced);
            if (granted) return Audited(new ManagementDecision(true, true, line, null));
            string reason = (d.Causes & DenialCauses.Constraint) != 0 ? "denied by a constraint"
                : (d.Causes & DenialCauses.Rbac) != 0 ? "denied by role-based access control"
                : $"no rule allow {SecurityContext.Parse(sourceContext).Type} {SecurityContext.Parse(VmContext).Type}:{EntrypointGate.VmClass} {permission}";
            return Audited(new ManagementDecision(false, notEnforced, line, reason));
        }
        catch (SecurityPolicyException e)
        {
            // Not decidable (no such permission in this policy, an invalid context, no policy): never allowed in enforcing mode.
            string line = AvcFormat.Line(false, [permission], _origin, what, sourceContext, VmContext, EntrypointGate.VmClass, permissive);
            return Audited(new ManagementDecision(false, permissive, line, e.Message));
        }
    }

    /// <summary>
    /// Before csvmm writes a snapshot to <paramref name="path"/>: may csvmm's domain write a file of the label the path
    /// has (an existing file) or would get (file_contexts, as restorecon would label it): <c>allow &lt;csvmm&gt;
    /// &lt;file type&gt;:file { write }</c>, and <c>create</c> too for a new file when the policy's file class has it.
    /// A path without a label is a denial. On an SELinux host with the kernel's policy the kernel checks the write
    /// itself when csvmm opens the file, so this answers yes without an AVC line (and so with checks disabled).
    /// </summary>
    public ManagementDecision CheckSnapshotWrite(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Mode == EnforcementMode.Disabled || _fileLabel is null || _processContext is null)
            return new ManagementDecision(true, true, null, null);
        bool permissive = Mode == EnforcementMode.Permissive;
        var label = _fileLabel(path);
        if (label.Context is not { } fileContext)
            return new ManagementDecision(false, permissive, null, $"the snapshot file {path} has no SELinux label: {label.Failure}");
        var permissions = new List<string> { "write" };
        try
        {
            SecurityClass file = _engine.GetClass("file");
            uint bits = _engine.GetPermission(file, "write");
            if (!File.Exists(path))
            {
                try
                {
                    bits |= _engine.GetPermission(file, "create");
                    permissions.Add("create");
                }
                catch (SecurityPolicyException e) when (e.Kind == PolicyErrorKind.UnknownPermission)
                {
                    // A policy whose file class has no create permission cannot refuse creating.
                }
            }
            AccessDecision d = _engine.ComputeAccess(_engine.GetSid(_processContext), _engine.GetSid(fileContext), file, bits);
            bool granted = d.Grants(bits);
            bool notEnforced = permissive || d.PermissiveDomain;
            string line = AvcFormat.Line(granted, permissions, _origin, path, _processContext, fileContext, "file", notEnforced);
            if (granted) return Audited(new ManagementDecision(true, true, line, null));
            return Audited(new ManagementDecision(false, notEnforced, line,
                $"no rule allow {SecurityContext.Parse(_processContext).Type} {SecurityContext.Parse(fileContext).Type}:file {{ {string.Join(' ', permissions)} }} ({label.Source})"));
        }
        catch (SecurityPolicyException e)
        {
            string line = AvcFormat.Line(false, permissions, _origin, path, _processContext, fileContext, "file", permissive);
            return Audited(new ManagementDecision(false, permissive, line, e.Message));
        }
    }
}
