namespace Csvmm.Security;

/// <summary>
/// The SELinux "vm entrypoint" gate: before a disk is loaded into a VM, it asks the policy
/// <list type="number">
/// <item>may the process read the disk file: <c>allow P D:file { read open getattr }</c>;</item>
/// <item>which type the VM gets: <c>type_change P D:vm V</c> (no rule is a denial: SELinux would fall back to the disk's own type);</item>
/// <item>may the disk enter that VM domain: <c>allow D V:vm entrypoint</c>.</item>
/// </list>
/// The gate is pure decision logic over an <see cref="IPolicyEngine"/>: no file system access, no
/// logging (it returns the AVC lines). It fails closed: every engine error, unlabelled disk,
/// invalid context or missing class/permission is a denial whose reason is the one-line error.
/// Thread-safe if the engine is (SepolEngine is).
/// </summary>
public sealed class EntrypointGate
{
    /// <summary>The class csvmm is the object manager of.</summary>
    public const string VmClass = "vm";
    /// <summary>The permission of <see cref="VmClass"/> checked from disk to VM.</summary>
    public const string EntrypointPermission = "entrypoint";
    /// <summary>The class of the disk image file.</summary>
    public const string FileClass = "file";
    /// <summary>Pseudo-permission naming the type_change check in AVC lines (class vm has no such permission; the fix is a type_change rule).</summary>
    public const string TypeChangeCheck = "type_change";

    /// <summary>The file permissions loading a disk needs.</summary>
    public static IReadOnlyList<string> FileReadPermissions { get; } = ["read", "open", "getattr"];

    private readonly IPolicyEngine _engine;
    private readonly AvcOrigin _origin;

    /// <summary>A gate deciding with <paramref name="engine"/> in <paramref name="mode"/>, logging as <paramref name="origin"/>.</summary>
    public EntrypointGate(IPolicyEngine engine, EnforcementMode mode, AvcOrigin origin)
    {
        ArgumentNullException.ThrowIfNull(engine);
        if (!Enum.IsDefined(mode))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown enforcement mode");
        _engine = engine;
        Mode = mode;
        _origin = origin;
    }

    /// <summary>The enforcement mode.</summary>
    public EnforcementMode Mode { get; }

    /// <summary>Decides whether the process <paramref name="processContext"/> may load the disk <paramref name="disk"/>.</summary>
    public EntrypointDecision Check(string processContext, DiskLabel disk)
    {
        ArgumentNullException.ThrowIfNull(processContext);
        ArgumentNullException.ThrowIfNull(disk);
        var decision = new EntrypointDecision
        {
            DiskPath = disk.Path,
            ProcessContext = processContext,
            DiskContext = disk.Context,
            Mode = Mode,
        };
        if (Mode == EnforcementMode.Disabled)
            return decision;
        if (disk.Context is null)
            return decision with { Failed = true, DenialReason = disk.Failure ?? $"disk {disk.Path} has no security label" };

        bool permissive = Mode == EnforcementMode.Permissive;
        string diskContext = disk.Context;
        GateCheck fileRead = default, typeChange = default, entrypoint = default;
        // A permissive source domain (libselinux's SELINUX_AVD_FLAGS_PERMISSIVE) does not enforce its denials, even in
        // enforcing mode. The type_change question has no access decision: the process is its source domain.
        bool processPermissive = false, diskPermissive = false;
        string? vmContext = null;
        try
        {
            SecurityClass fileClass = _engine.GetClass(FileClass);
            var filePermissions = new (string Name, uint Bit)[FileReadPermissions.Count];
            uint readRequest = 0;
            for (int i = 0; i < filePermissions.Length; i++)
            {
                uint bit = _engine.GetPermission(fileClass, FileReadPermissions[i]);
                filePermissions[i] = (FileReadPermissions[i], bit);
                readRequest |= bit;
            }
            SecurityClass vmClass = _engine.GetClass(VmClass);
            uint entrypointBit = _engine.GetPermission(vmClass, EntrypointPermission);

            SecurityId process = _engine.GetSid(processContext);
            SecurityId diskSid = _engine.GetSid(diskContext);
            string processType = SecurityContext.Parse(processContext).Type;
            string diskType = SecurityContext.Parse(diskContext).Type;

            // 1. May the process read the disk file?
            AccessDecision read = _engine.ComputeAccess(process, diskSid, fileClass, readRequest);
            processPermissive = read.PermissiveDomain;
            fileRead = Access(read, readRequest, filePermissions, disk.Path, processContext, diskContext, FileClass, permissive || processPermissive,
                missing => $"no rule allow {processType} {diskType}:{FileClass} {{ {missing} }}");

            // 2. Which VM context does the disk lead to? No type_change rule = the disk's own type = denial.
            SecurityId vm = _engine.ComputeTypeChange(process, diskSid, vmClass);
            vmContext = _engine.GetContext(vm);
            string vmType = SecurityContext.Parse(vmContext).Type;
            bool changed = vmType != diskType;
            typeChange = new GateCheck(
                changed ? CheckState.Granted : CheckState.Denied,
                AvcFormat.Line(changed, [TypeChangeCheck], _origin, disk.Path, processContext, diskContext, VmClass, permissive || processPermissive),
                changed ? null : $"no type_change rule: type_change {processType} {diskType}:{VmClass} <vm type> is missing");

            // 3. May the disk enter the VM domain?
            AccessDecision enter = _engine.ComputeAccess(diskSid, vm, vmClass, entrypointBit);
            diskPermissive = enter.PermissiveDomain;
            entrypoint = Access(enter, entrypointBit, [(EntrypointPermission, entrypointBit)], disk.Path, diskContext, vmContext, VmClass,
                permissive || diskPermissive, _ => $"no rule allow {diskType} {vmType}:{VmClass} {EntrypointPermission}");
        }
        catch (SecurityPolicyException e)
        {
            return decision with
            {
                FileRead = fileRead, TypeChange = typeChange, Entrypoint = entrypoint, VmContext = vmContext,
                Failed = true, DenialReason = e.Message,
            };
        }

        var denials = new List<string>(3);
        if (!fileRead.Granted) denials.Add("file read denied: " + fileRead.Reason);
        if (!typeChange.Granted) denials.Add(typeChange.Reason!);
        if (!entrypoint.Granted) denials.Add("entrypoint denied: " + entrypoint.Reason);
        bool enforcedDenial = (!fileRead.Granted && !processPermissive) || (!typeChange.Granted && !processPermissive)
            || (!entrypoint.Granted && !diskPermissive);
        return decision with
        {
            FileRead = fileRead, TypeChange = typeChange, Entrypoint = entrypoint, VmContext = vmContext,
            PolicyAllows = denials.Count == 0,
            PermissiveDomain = denials.Count > 0 && !enforcedDenial,
            DenialReason = denials.Count == 0 ? null : string.Join("; ", denials),
        };
    }

    /// <summary>
    /// Combines the decisions for all disks of one VM: every disk must be allowed and all must lead
    /// to the same VM context; disagreement is a denial.
    /// </summary>
    public VmDecision Combine(IReadOnlyList<EntrypointDecision> disks)
    {
        ArgumentNullException.ThrowIfNull(disks);
        var result = new VmDecision { Disks = disks, Mode = Mode };
        if (Mode == EnforcementMode.Disabled)
            return result;
        if (disks.Count == 0)
            return result with { PolicyAllows = true };

        var contexts = disks.Select(d => d.VmContext).Distinct(StringComparer.Ordinal).ToList();
        var denied = disks.Where(d => !d.PolicyAllows).ToList();
        if (denied.Count > 0)
        {
            string more = denied.Count > 1 ? $" (and {denied.Count - 1} more denied disk{(denied.Count > 2 ? "s" : "")})" : "";
            return result with
            {
                DenialReason = $"disk {denied[0].DiskPath}: {denied[0].DenialReason}{more}",
                // Only denials of permissive domains, and the disks agree: SELinux would log and allow.
                PermissiveDomain = denied.All(d => d.PermissiveDomain && !d.Failed) && contexts.Count == 1,
            };
        }

        if (contexts.Count > 1)
            return result with
            {
                DenialReason = "disks disagree on the VM context: " +
                    string.Join("; ", disks.Select(d => $"{d.DiskPath} -> {d.VmContext}")),
            };
        return result with { PolicyAllows = true, VmContext = contexts[0] };
    }

    private GateCheck Access(AccessDecision decision, uint requested, (string Name, uint Bit)[] permissions, string path,
        string source, string target, string targetClass, bool permissive, Func<string, string> missingRule)
    {
        if (decision.Grants(requested))
            return new GateCheck(CheckState.Granted,
                AvcFormat.Line(true, permissions.Select(p => p.Name), _origin, path, source, target, targetClass, permissive), null);

        uint missing = decision.Missing(requested);
        var missingNames = permissions.Where(p => (p.Bit & missing) != 0).Select(p => p.Name).ToList();
        string reason;
        if ((decision.Causes & DenialCauses.Constraint) != 0)
            reason = "denied by a constraint" + (decision.ConstraintExplanation is { } text ? ": " + text : "");
        else if ((decision.Causes & DenialCauses.Bounds) != 0)
            reason = "masked by a typebounds restriction";
        else if ((decision.Causes & DenialCauses.Rbac) != 0)
            reason = "denied by role-based access control";
        else
            reason = missingRule(string.Join(' ', missingNames));
        return new GateCheck(CheckState.Denied,
            AvcFormat.Line(false, missingNames, _origin, path, source, target, targetClass, permissive), reason);
    }
}

/// <summary>
/// An engine standing for a policy that could not be loaded: every call fails with the load error,
/// so a gate built on it denies every disk in enforcing mode and logs why in permissive mode.
/// </summary>
public sealed class UnavailablePolicyEngine(string reason) : IPolicyEngine
{
    /// <summary>The load error every call reports.</summary>
    public string Reason { get; } = reason ?? throw new ArgumentNullException(nameof(reason));

    /// <inheritdoc/>
    public string Description => "no SELinux policy (" + Reason + ")";

    /// <inheritdoc/>
    public SecurityClass GetClass(string name) => throw Fail();
    /// <inheritdoc/>
    public uint GetPermission(SecurityClass securityClass, string permission) => throw Fail();
    /// <inheritdoc/>
    public SecurityId GetSid(string context) => throw Fail();
    /// <inheritdoc/>
    public string GetContext(SecurityId sid) => throw Fail();
    /// <inheritdoc/>
    public AccessDecision ComputeAccess(SecurityId source, SecurityId target, SecurityClass securityClass, uint requested) => throw Fail();
    /// <inheritdoc/>
    public SecurityId ComputeTypeChange(SecurityId source, SecurityId target, SecurityClass securityClass) => throw Fail();

    private SecurityPolicyException Fail() => new(PolicyErrorKind.PolicyUnavailable, Reason);
}
