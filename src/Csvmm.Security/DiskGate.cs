using Csvmm.Block;
using Serilog;

namespace Csvmm.Security;

/// <summary>The SELinux options of <c>csvmm</c> and <c>csvmm check</c>.</summary>
/// <param name="Mode">--selinux; null: follow the host (see <see cref="DiskGate.PlanFor(EnforcementMode?, SelinuxHostState)"/>).</param>
/// <param name="PolicyPath">--policy: the compiled standalone policy libsepol decides with.</param>
/// <param name="FileContextsPath">--file-contexts: the trusted path → label mapping.</param>
/// <param name="ProcessContext">--context: the domain csvmm acts as (no SELinux kernel tells it).</param>
/// <param name="TrustXattr">--trust-xattr: label disks by their security.selinux attribute instead of file_contexts.</param>
/// <param name="UseHostContext">No --context was given: on an SELinux host the gate decides for getcon()'s context, not <paramref name="ProcessContext"/>.</param>
/// <param name="Transition">--selinux-transition: re-execute csvmm in the VM's domain once the gate allows (SELinux hosts only).</param>
public sealed record SecurityOptions(EnforcementMode? Mode, string PolicyPath, string FileContextsPath, string ProcessContext, bool TrustXattr,
    bool UseHostContext = false, bool Transition = false)
{
    /// <summary>&lt;directory of the csvmm executable&gt;/policy/policy.33 (out/policy/policy.33 beside out/csvmm).</summary>
    public static string DefaultPolicyPath => Path.Combine(AppContext.BaseDirectory, "policy", StandalonePolicy.PolicyFileName);

    /// <summary>The file_contexts beside <paramref name="policyPath"/>.</summary>
    public static string DefaultFileContextsPath(string policyPath) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(policyPath)) ?? "/", StandalonePolicy.FileContextsFileName);

    /// <summary>Follow the host, shipped policy, default context, file_contexts labels.</summary>
    public static SecurityOptions Default => new(null, DefaultPolicyPath, DefaultFileContextsPath(DefaultPolicyPath),
        StandalonePolicy.DefaultProcessContext, false, UseHostContext: true);

    /// <summary>Parses an --selinux value (enforcing, permissive, disabled); null when it is none of them.</summary>
    public static EnforcementMode? ParseMode(string text) => text switch
    {
        "enforcing" => EnforcementMode.Enforcing,
        "permissive" => EnforcementMode.Permissive,
        "disabled" => EnforcementMode.Disabled,
        _ => null,
    };
}

/// <summary>How the gate will run: the effective mode, or a refusal that stops csvmm before any disk is touched.</summary>
/// <param name="Mode">The effective enforcement mode.</param>
/// <param name="Refusal">Non-null: deny everything with this one-line reason (the CLI's exit code 6).</param>
/// <param name="Explanation">What was decided and why, for the log.</param>
/// <param name="KernelPolicy">True on an SELinux host: libselinux and the kernel's policy and file labels decide; false: libsepol, the standalone policy and file_contexts.</param>
public readonly record struct GatePlan(EnforcementMode Mode, string? Refusal, string Explanation, bool KernelPolicy = false);

/// <summary>What kind of failure stops csvmm after <see cref="DiskGate.Transition"/> (the CLI maps each to its exit code).</summary>
public enum TransitionFailureKind
{
    /// <summary>--selinux-transition cannot work with these options or on this host (no SELinux, no disk).</summary>
    Usage,
    /// <summary>The transition was refused or did not take effect.</summary>
    Denied,
    /// <summary>execve came back without an error: csvmm's own fault.</summary>
    Internal,
}

/// <summary>Why csvmm must stop instead of running the VM after <see cref="DiskGate.Transition"/>.</summary>
public readonly record struct TransitionFailure(TransitionFailureKind Kind, string Message);

/// <summary>
/// The gate's result for one VM. When the VM may run, <see cref="Disks"/> holds one <see cref="AdmittedDisk"/> per
/// <c>--disk</c>, in order: the tokens <see cref="DiskOpener"/> opens. When it may not, there are none.
/// </summary>
public sealed class GateOutcome : IDisposable
{
    internal GateOutcome(GatePlan plan, IReadOnlyList<AdmittedDisk> disks, VmDecision? decision, string? refusal)
    {
        Plan = plan;
        Disks = disks;
        Decision = decision;
        Refusal = refusal;
    }

    /// <summary>The mode the gate ran in.</summary>
    public GatePlan Plan { get; }

    /// <summary>The admitted disks, in --disk order; empty when the gate refused (or there were no disks).</summary>
    public IReadOnlyList<AdmittedDisk> Disks { get; }

    /// <summary>The policy's verdict for the VM (null when disabled or refused up front).</summary>
    public VmDecision? Decision { get; }

    /// <summary>Non-null: csvmm must stop (the CLI's exit code 6) with this one-line reason; no disk was admitted.</summary>
    public string? Refusal { get; }

    /// <summary>The process context the gate decided for (null when not decided).</summary>
    public string? ProcessContext { get; init; }

    /// <summary>The marker of a csvmm re-executed by --selinux-transition (null in the parent, or without the option).</summary>
    public TransitionMarker? Marker { get; init; }

    /// <summary>Set when --selinux-transition cannot work at all (no SELinux): <see cref="DiskGate.Transition"/> reports it.</summary>
    public TransitionFailure? TransitionError { get; init; }

    /// <summary>
    /// Decides the VM's management operations (QMP commands, save, migration) with the engine and mode that admitted it,
    /// on the VM context (csvmm's own context for a VM without disks). Null when checks are disabled or the VM was refused.
    /// </summary>
    public ManagementGate? Management { get; init; }

    /// <summary>Closes the admitted disks' O_PATH descriptors (once the disks are open for I/O, or on the way out).</summary>
    public void Dispose()
    {
        foreach (var d in Disks)
            d.Dispose();
    }
}

/// <summary>
/// The SELinux vm-entrypoint gate (<see cref="EntrypointGate"/> decides; this type runs it on real files) for a VM's
/// disks, before any of them is opened for reading or writing: each path is opened O_PATH (<see cref="DiskCandidate"/>:
/// no access to its contents), the label of THAT descriptor is looked up, the policy decides, and only an admitted disk
/// becomes an <see cref="AdmittedDisk"/>, the one thing <see cref="DiskOpener"/> opens, through <c>/proc/self/fd/N</c>,
/// so the file used is the file checked.
/// <list type="bullet">
/// <item>SELinux host: libselinux (<see cref="SelinuxEngine"/>) and the kernel's policy decide, for getcon()'s
/// context (or --context); the label is the kernel's (<see cref="SelinuxHost.FileLabel(Microsoft.Win32.SafeHandles.SafeFileHandle, string)"/>:
/// fgetfilecon_raw, or getfilecon_raw of /proc/self/fd/N where libselinux cannot read an O_PATH descriptor).</item>
/// <item>No SELinux (is_selinux_enabled() = 0): libsepol (<see cref="SepolEngine"/>) and the standalone policy decide, for
/// --context (default user_u:user_r:user_t); labels come from the root-owned file_contexts by real path, or the
/// self-asserted xattr with --trust-xattr.</item>
/// </list>
/// Decisions are logged: granted AVC lines at Debug, denials at Warning (permissive) or Error (enforcing), the VM
/// context at Information.
/// </summary>
public sealed class DiskGate
{
    private readonly SecurityOptions _options;
    private readonly ILogger _log;
    private readonly SelinuxHostState _host;
    private readonly Lazy<IAvcAudit?> _audit;

    /// <summary>A gate for this host (<see cref="SelinuxHost.Probe"/>).</summary>
    public DiskGate(SecurityOptions options, ILogger log) : this(options, log, SelinuxHost.Probe()) { }

    /// <summary>
    /// A gate for a given host state (tests). <paramref name="audit"/> receives every AVC line; by default the
    /// kernel's audit system does (<see cref="AuditLog"/>) when the kernel's policy decides, and nothing otherwise.
    /// </summary>
    internal DiskGate(SecurityOptions options, ILogger log, SelinuxHostState host, IAvcAudit? audit = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(host);
        _options = options;
        _log = log;
        _host = host;
        Plan = PlanFor(options.Mode, host);
        _audit = new Lazy<IAvcAudit?>(() => audit ?? (Plan.KernelPolicy && Plan.Mode != EnforcementMode.Disabled ? AuditLog.Open(log) : null));
    }

    /// <summary>The engine and mode this gate decides with.</summary>
    public GatePlan Plan { get; }

    /// <summary>
    /// Chooses the engine and the mode. On a host without SELinux (is_selinux_enabled() = 0): libsepol with the standalone
    /// policy, permissive unless --selinux says otherwise. On an SELinux host: libselinux with the kernel's policy, in the
    /// kernel's mode (security_getenforce()) unless --selinux overrides it; when the kernel's mode cannot be read,
    /// enforcing (fail closed). --selinux disabled turns the checks off on either host.
    /// </summary>
    public static GatePlan PlanFor(EnforcementMode? requested, SelinuxHostState host)
    {
        ArgumentNullException.ThrowIfNull(host);
        string detail = host.Explanation;
        if (requested == EnforcementMode.Disabled)
            return new(EnforcementMode.Disabled, null, $"SELinux checks disabled by --selinux disabled ({detail})", host.Enabled);
        if (!host.Enabled)
        {
            return requested is { } m
                ? new(m, null, $"{detail}; deciding with the standalone policy (libsepol) in {Name(m)} mode (--selinux {Name(m)})")
                : new(EnforcementMode.Permissive, null,
                    $"{detail}; deciding with the standalone policy (libsepol) in permissive mode (denials are logged, not enforced)");
        }
        EnforcementMode mode = requested ?? (host.KernelEnforcing == false ? EnforcementMode.Permissive : EnforcementMode.Enforcing);
        string why = requested is not null ? $"--selinux {Name(mode)}"
            : host.KernelEnforcing is null ? "security_getenforce() failed: enforcing, fail closed"
            : "the kernel's mode";
        return new(mode, null, $"{detail}; deciding with the kernel's policy (libselinux) in {Name(mode)} mode ({why})", KernelPolicy: true);
    }

    /// <summary><see cref="PlanFor(EnforcementMode?, SelinuxHostState)"/> for a host known only by its state (the kernel's mode unknown).</summary>
    public static GatePlan PlanFor(EnforcementMode? requested, HostSelinux host, string hostDetail) =>
        PlanFor(requested, new SelinuxHostState(host, null, null, hostDetail));

    private static string Name(EnforcementMode mode) => mode.ToString().ToLowerInvariant();

    /// <summary>
    /// Opens every disk O_PATH, labels and checks it, and returns the outcome: the admitted disks when the VM may run
    /// (allowed, permissive, or checks disabled), none when it may not.
    /// </summary>
    /// <exception cref="DiskException">A path that cannot be a disk (missing, a directory, empty...): nothing admitted, nothing opened for I/O.</exception>
    public GateOutcome Admit(IReadOnlyList<string> diskPaths)
    {
        ArgumentNullException.ThrowIfNull(diskPaths);
        _log.Information("SELinux: {Plan}", Plan.Explanation);
        if (_options.Transition && !_host.Enabled)
            return new GateOutcome(Plan, [], null, null)
            {
                TransitionError = new(TransitionFailureKind.Usage,
                    $"--selinux-transition needs SELinux in the kernel, but {_host.Explanation}: there is no VM domain to re-execute csvmm in"),
            };
        if (Plan.Refusal is not null)
            return new GateOutcome(Plan, [], null, Plan.Refusal);

        // Whose decision this is. A csvmm re-executed by --selinux-transition already runs in the VM's domain: it decides
        // again for the domain that asked for the VM (its parent's, from the marker) and then checks where it runs.
        TransitionMarker? marker = null;
        if (_options.Transition && Plan.Mode != EnforcementMode.Disabled && diskPaths.Count > 0)
        {
            marker = SelinuxTransition.CurrentMarker(out bool present);
            if (present && marker is null)
                return new GateOutcome(Plan, [], null,
                    $"--selinux-transition: the environment variable {SelinuxTransition.MarkerVariable} is malformed");
        }

        var candidates = new List<DiskCandidate>(diskPaths.Count);
        try
        {
            foreach (string path in diskPaths)
                candidates.Add(DiskCandidate.Open(path));
            if (Plan.Mode == EnforcementMode.Disabled)
                return new GateOutcome(Plan, AdmitAll(candidates), null, null);
            if (candidates.Count == 0)
            {
                // No disk, no entrypoint: the VM runs in csvmm's own domain, and its management is decided on that.
                var (self, selfEngine) = (ProcessContextFor(marker) ?? "(unknown)", EngineFor());
                _log.Information("SELinux: no disk: the VM's context is csvmm's own, {Context}", self);
                return new GateOutcome(Plan, [], null, null)
                {
                    ProcessContext = self,
                    Management = NewManagementGate(selfEngine, self, self),
                };
            }

            (VmDecision vm, string processContext, IPolicyEngine engine) = Decide(candidates, marker);
            if (vm.PolicyAllows)
                _log.Information("SELinux: VM context {VmContext}", vm.VmContext);
            else if (vm.Allowed)
                _log.Warning("SELinux (permissive): would deny the VM: {Reason}", vm.DenialReason);
            if (!vm.Allowed)
            {
                foreach (var c in candidates)
                    c.Dispose();
                return new GateOutcome(Plan, [], vm, vm.DenialReason ?? "SELinux denied the VM") { ProcessContext = processContext, Marker = marker };
            }
            return new GateOutcome(Plan, AdmitAll(candidates), vm, null)
            {
                ProcessContext = processContext, Marker = marker,
                Management = NewManagementGate(engine, vm.VmContext ?? processContext, processContext),
            };
        }
        catch
        {
            foreach (var c in candidates)
                c.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The VM's management gate: the engine and mode of its entrypoint; csvmm's domain writes snapshots, labelled from
    /// file_contexts (the kernel's own check on an SELinux host); decisions audited where the entrypoint's are.
    /// </summary>
    private ManagementGate NewManagementGate(IPolicyEngine engine, string vmContext, string processContext) =>
        new(engine, Plan.Mode, vmContext, AvcOrigin.Current,
            Plan.KernelPolicy ? null : processContext, Plan.KernelPolicy ? null : PathLabeler(_options, engine))
        { Audit = _audit.Value };

    private static List<AdmittedDisk> AdmitAll(List<DiskCandidate> candidates)
    {
        var admitted = new List<AdmittedDisk>(candidates.Count);
        foreach (var c in candidates)
            admitted.Add(new AdmittedDisk(c));
        return admitted;
    }

    private string? ProcessContextFor(TransitionMarker? marker) => marker?.SourceContext
        ?? (Plan.KernelPolicy && _options.UseHostContext ? _host.ProcessContext : _options.ProcessContext);

    private IPolicyEngine EngineFor() => Plan.KernelPolicy ? LoadKernelEngine() : LoadEngine(_options.PolicyPath);

    private (VmDecision Vm, string ProcessContext, IPolicyEngine Engine) Decide(List<DiskCandidate> candidates, TransitionMarker? marker)
    {
        string? processContext = ProcessContextFor(marker);
        IPolicyEngine engine = EngineFor();
        if (processContext is null)
        {
            // getcon() failed on an SELinux host: no domain to decide for, so every disk is denied.
            engine = new UnavailablePolicyEngine($"cannot tell csvmm's own SELinux domain: {_host.ProcessContextError ?? "getcon() failed"}");
            processContext = "(unknown)";
        }
        _log.Debug("SELinux: deciding with {Engine} as {Context}", engine.Description, processContext);
        Func<DiskCandidate, DiskLabel> label;
        if (Plan.KernelPolicy)
        {
            _log.Debug("SELinux: disks are labelled by the kernel (fgetfilecon); --policy, --file-contexts and --trust-xattr do not apply");
            label = d => SelinuxHost.FileLabel(d.Handle, d.RealPath);
        }
        else
        {
            label = Labeler(_options, engine);
        }
        var gate = new EntrypointGate(engine, Plan.Mode, AvcOrigin.Current);
        var decisions = new List<EntrypointDecision>(candidates.Count);
        foreach (var disk in candidates)
        {
            EntrypointDecision d = gate.Check(processContext, label(disk));
            LogDecision(_log, d, Plan.Mode, _audit.Value);
            decisions.Add(d);
        }
        return (gate.Combine(decisions), processContext, engine);
    }

    private static void LogDecision(ILogger log, EntrypointDecision d, EnforcementMode mode, IAvcAudit? audit)
    {
        foreach (var check in new[] { d.FileRead, d.TypeChange, d.Entrypoint })
        {
            if (check.AvcLine is null)
                continue;
            audit?.UserAvc(check.AvcLine);
            if (check.Granted)
                log.Debug("{Avc}", check.AvcLine);
            else if (mode == EnforcementMode.Enforcing && !d.PermissiveDomain)
                log.Error("{Avc}", check.AvcLine);
            else
                log.Warning("{Avc}", check.AvcLine);
        }
        // A failure (no policy, no label, invalid context) has no AVC line to explain it.
        if (d.Failed && mode == EnforcementMode.Permissive)
            log.Warning("SELinux (permissive): would deny disk {Disk}: {Reason}", d.DiskPath, d.DenialReason);
    }

    /// <summary>libselinux with the kernel's policy, or an engine that fails every call with the reason it cannot be used (fail closed).</summary>
    internal static IPolicyEngine LoadKernelEngine()
    {
        try
        {
            return SelinuxEngine.Open();
        }
        catch (SecurityPolicyException e)
        {
            return new UnavailablePolicyEngine(e.Message);
        }
    }

    /// <summary>
    /// --selinux-transition, once the gate has allowed the VM and before any disk is opened for I/O or guest RAM exists:
    /// re-executes csvmm in the VM's domain (<see cref="SelinuxTransition"/>), or, in the re-executed csvmm, checks that
    /// it runs in the domain expected. Returns null to go on; never returns after a successful re-exec.
    /// </summary>
    public TransitionFailure? Transition(GateOutcome outcome)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        if (!_options.Transition)
            return null;
        if (outcome.TransitionError is { } early)
            return early;
        if (outcome.Decision is not { } vm || outcome.ProcessContext is not { } processContext)
            return new(TransitionFailureKind.Usage,
                "--selinux-transition needs the SELinux checks and at least one --disk: the VM's domain comes from its disks");
        if (!vm.PolicyAllows || vm.VmContext is null)
        {
            // Only reachable when the denial is not enforced (permissive): there is no VM domain to enter.
            _log.Warning("SELinux ({Mode}): not re-executing csvmm in a VM domain: {Reason}", Name(vm.Mode), vm.DenialReason);
            return null;
        }
        string exec;
        try
        {
            exec = SelinuxTransition.ExecContext(processContext, vm.VmContext);
        }
        catch (SecurityPolicyException e)
        {
            return new(TransitionFailureKind.Denied, "--selinux-transition: " + e.Message);
        }

        if (outcome.Marker is { } marker)
        {
            if (marker.ExecContext != exec)
                return new(TransitionFailureKind.Denied, $"--selinux-transition: re-executed in {marker.ExecContext}, but the VM's domain is now {exec}");
            string current;
            try
            {
                current = SelinuxHost.CurrentContext();
            }
            catch (SecurityPolicyException e)
            {
                return new(TransitionFailureKind.Denied, "--selinux-transition: " + e.Message);
            }
            if (current != exec)
                return new(TransitionFailureKind.Denied, $"--selinux-transition did not take effect: csvmm runs as {current}, not {exec}");
            Environment.SetEnvironmentVariable(SelinuxTransition.MarkerVariable, null);
            _log.Information("SELinux: running in the VM's domain {Context}", current);
            return null;
        }

        _log.Information("SELinux: re-executing csvmm in the VM's domain {Context}", exec);
        try
        {
            SelinuxTransition.ReExec(new TransitionMarker(processContext, exec));
        }
        catch (SecurityPolicyException e)
        {
            return new(TransitionFailureKind.Denied, e.Message);
        }
        return new(TransitionFailureKind.Internal, "execve returned without an error"); // ReExec never returns normally
    }

    /// <summary>libsepol with the compiled policy, or an engine that fails every call with the load error (fail closed).</summary>
    internal static IPolicyEngine LoadEngine(string policyPath)
    {
        try
        {
            return SepolEngine.Load(policyPath, FileTrust.RootOwned);
        }
        catch (SecurityPolicyException e)
        {
            return new UnavailablePolicyEngine(e.Message);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return new UnavailablePolicyEngine($"libsepol is not usable: {e.Message}");
        }
    }

    /// <summary>The label a file at a path has or would get, from file_contexts (snapshot files csvmm is about to write).</summary>
    private static Func<string, DiskLabel> PathLabeler(SecurityOptions options, IPolicyEngine engine)
    {
        var contexts = LoadFileContexts(options, engine, out string? failure);
        return path =>
        {
            if (contexts is null) return DiskLabel.Unlabelled(path, options.FileContextsPath, failure!);
            try
            {
                return File.Exists(path) ? contexts.LookupFile(path) : contexts.Lookup(Path.GetFullPath(path), FileKind.Regular);
            }
            catch (SecurityPolicyException e)
            {
                return DiskLabel.Unlabelled(path, options.FileContextsPath, e.Message);
            }
        };
    }

    /// <summary>The trusted file_contexts, checked against the policy; null with the reason when it cannot be used.</summary>
    private static FileContexts? LoadFileContexts(SecurityOptions options, IPolicyEngine engine, out string? failure)
    {
        failure = null;
        try
        {
            var contexts = FileContexts.Load(options.FileContextsPath, FileTrust.RootOwned);
            if (engine is SepolEngine)
                contexts.Validate(engine);
            return contexts;
        }
        catch (SecurityPolicyException e)
        {
            failure = e.Message;
            return null;
        }
    }

    private static Func<DiskCandidate, DiskLabel> Labeler(SecurityOptions options, IPolicyEngine engine)
    {
        if (options.TrustXattr)
            return d => DiskLabel.FromXattr(d.Handle, d.RealPath);

        var contexts = LoadFileContexts(options, engine, out string? failure);
        return d => contexts?.LookupOpened(d.Handle) ?? DiskLabel.Unlabelled(d.RealPath, options.FileContextsPath, failure!);
    }
}
