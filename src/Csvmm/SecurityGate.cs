using System.Runtime.InteropServices;
using Csvmm.Block;
using Csvmm.Security;
using Microsoft.Win32.SafeHandles;
using Serilog;
using Tmds.Linux;

// csvmm is a KVM monitor gated by libsepol/libselinux and /proc: Linux only (as Csvmm.Security).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Csvmm.Cli;

/// <summary>The SELinux options of <c>csvmm</c> and <c>csvmm check</c>.</summary>
/// <param name="Mode">--selinux; null: follow the host (see <see cref="SecurityGate.Plan"/>).</param>
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
/// <param name="Refusal">Non-null: deny everything with this one-line reason (exit code 6).</param>
/// <param name="Explanation">What was decided and why, for the log.</param>
/// <param name="KernelPolicy">True on an SELinux host: libselinux and the kernel's policy and file labels decide; false: libsepol, the standalone policy and file_contexts.</param>
public readonly record struct GatePlan(EnforcementMode Mode, string? Refusal, string Explanation, bool KernelPolicy = false);

/// <summary>Why csvmm must stop instead of running the VM after <see cref="SecurityGate.Transition"/>, and with which exit code.</summary>
public readonly record struct TransitionFailure(int ExitCode, string Message);

/// <summary>A disk path opened O_PATH for the gate: the descriptor whose label is checked and through which the disk is then reopened.</summary>
public sealed class GatedDisk : IDisposable
{
    private readonly SafeFileHandle _handle;

    internal GatedDisk(string givenPath, SafeFileHandle handle)
    {
        GivenPath = givenPath;
        _handle = handle;
        ReopenPath = $"/proc/self/fd/{(int)handle.DangerousGetHandle()}";
    }

    /// <summary>The path as the user gave it.</summary>
    public string GivenPath { get; }

    /// <summary>The O_PATH descriptor (no read or write access to the disk's contents).</summary>
    public SafeFileHandle Handle => _handle;

    /// <summary><c>/proc/self/fd/N</c>: opening it opens the very file that was checked, whatever happened to the path since.</summary>
    public string ReopenPath { get; }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();
}

/// <summary>The gate's result for one VM: what may be opened, and how.</summary>
public sealed class GateOutcome : IDisposable
{
    internal GateOutcome(GatePlan plan, IReadOnlyList<string> paths, IReadOnlyList<GatedDisk> disks, VmDecision? decision, string? refusal)
    {
        Plan = plan;
        _paths = paths;
        Disks = disks;
        Decision = decision;
        Refusal = refusal;
    }

    private readonly IReadOnlyList<string> _paths;

    /// <summary>The mode the gate ran in.</summary>
    public GatePlan Plan { get; }

    /// <summary>The O_PATH-opened disks, in --disk order (empty when checks are disabled or refused up front).</summary>
    public IReadOnlyList<GatedDisk> Disks { get; }

    /// <summary>The policy's verdict for the VM (null when disabled or refused up front).</summary>
    public VmDecision? Decision { get; }

    /// <summary>Non-null: csvmm must stop with <see cref="ExitCodes.Denied"/> and this one-line reason.</summary>
    public string? Refusal { get; }

    /// <summary>The process context the gate decided for (null when not decided).</summary>
    public string? ProcessContext { get; init; }

    /// <summary>The marker of a csvmm re-executed by --selinux-transition (null in the parent, or without the option).</summary>
    public TransitionMarker? Marker { get; init; }

    /// <summary>Set when --selinux-transition cannot work at all (no SELinux): <see cref="SecurityGate.Transition"/> reports it.</summary>
    public TransitionFailure? TransitionError { get; init; }

    /// <summary>The path DiskOpener opens for disk <paramref name="index"/>: the checked descriptor's /proc/self/fd link, or the given path when checks are disabled.</summary>
    public string OpenPath(int index) => Disks.Count == 0 ? _paths[index] : Disks[index].ReopenPath;

    /// <summary>How messages name disk <paramref name="index"/>.</summary>
    public string DisplayName(int index) => _paths[index];

    /// <summary>Closes the O_PATH descriptors (once the disks are open for I/O, or on the way out).</summary>
    public void Dispose()
    {
        foreach (var d in Disks)
            d.Dispose();
    }
}

/// <summary>
/// Runs the SELinux vm-entrypoint gate (<see cref="EntrypointGate"/>) for csvmm's disks before any of
/// them is opened for reading or writing: each path is opened O_PATH (no access to its contents), the
/// label of THAT descriptor is looked up, the policy decides, and an allowed disk is later reopened through
/// <c>/proc/self/fd/N</c> so the file used is the file checked.
/// <list type="bullet">
/// <item>SELinux host: libselinux (<see cref="SelinuxEngine"/>) and the kernel's policy decide, for getcon()'s
/// context (or --context); the label is the kernel's (<see cref="SelinuxHost.FileLabel(SafeFileHandle, string)"/>:
/// fgetfilecon_raw, or getfilecon_raw of /proc/self/fd/N where libselinux cannot read an O_PATH descriptor).</item>
/// <item>No SELinux (is_selinux_enabled() = 0): libsepol (<see cref="SepolEngine"/>) and the standalone policy decide, for
/// --context (default user_u:user_r:user_t); labels come from the root-owned file_contexts by real path, or the
/// self-asserted xattr with --trust-xattr.</item>
/// </list>
/// </summary>
public static class SecurityGate
{
    /// <summary>
    /// Chooses the engine and the mode. On a host without SELinux (is_selinux_enabled() = 0): libsepol with the standalone
    /// policy, permissive unless --selinux says otherwise. On an SELinux host: libselinux with the kernel's policy, in the
    /// kernel's mode (security_getenforce()) unless --selinux overrides it; when the kernel's mode cannot be read,
    /// enforcing (fail closed). --selinux disabled turns the checks off on either host.
    /// </summary>
    public static GatePlan Plan(EnforcementMode? requested, SelinuxHostState host)
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

    /// <summary><see cref="Plan(EnforcementMode?, SelinuxHostState)"/> for a host known only by its state (the kernel's mode unknown).</summary>
    public static GatePlan Plan(EnforcementMode? requested, HostSelinux host, string hostDetail) =>
        Plan(requested, new SelinuxHostState(host, null, null, hostDetail));

    private static string Name(EnforcementMode mode) => mode.ToString().ToLowerInvariant();

    /// <summary>
    /// Opens every disk O_PATH, labels and checks it, and logs the decisions: granted AVC lines at
    /// Debug, denials at Warning (permissive) or Error (enforcing), the VM context at Information.
    /// </summary>
    /// <exception cref="DiskException">A path that cannot be a disk (missing, a directory, empty...): exit code 3, nothing opened for I/O.</exception>
    public static GateOutcome Evaluate(SecurityOptions options, IReadOnlyList<string> diskPaths, ILogger log) =>
        Evaluate(options, diskPaths, log, SelinuxHost.Probe());

    /// <summary><see cref="Evaluate(SecurityOptions, IReadOnlyList{string}, ILogger)"/> for a given host state (tests).</summary>
    internal static GateOutcome Evaluate(SecurityOptions options, IReadOnlyList<string> diskPaths, ILogger log, SelinuxHostState host)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(diskPaths);
        ArgumentNullException.ThrowIfNull(host);
        GatePlan plan = Plan(options.Mode, host);
        log.Information("SELinux: {Plan}", plan.Explanation);
        if (options.Transition && !host.Enabled)
            return new GateOutcome(plan, diskPaths, [], null, null)
            {
                TransitionError = new(ExitCodes.Usage,
                    $"--selinux-transition needs SELinux in the kernel, but {host.Explanation}: there is no VM domain to re-execute csvmm in"),
            };
        if (plan.Refusal is not null)
            return new GateOutcome(plan, diskPaths, [], null, plan.Refusal);
        if (plan.Mode == EnforcementMode.Disabled || diskPaths.Count == 0)
            return new GateOutcome(plan, diskPaths, [], null, null);

        // Whose decision this is. A csvmm re-executed by --selinux-transition already runs in the VM's domain: it decides
        // again for the domain that asked for the VM (its parent's, from the marker) and then checks where it runs.
        TransitionMarker? marker = null;
        if (options.Transition)
        {
            marker = SelinuxTransition.CurrentMarker(out bool present);
            if (present && marker is null)
                return new GateOutcome(plan, diskPaths, [], null,
                    $"--selinux-transition: the environment variable {SelinuxTransition.MarkerVariable} is malformed");
        }
        string? processContext = marker?.SourceContext
            ?? (plan.KernelPolicy && options.UseHostContext ? host.ProcessContext : options.ProcessContext);

        var disks = new List<GatedDisk>(diskPaths.Count);
        try
        {
            foreach (string path in diskPaths)
                disks.Add(OpenPathOnly(path));

            IPolicyEngine engine = plan.KernelPolicy ? LoadKernelEngine() : LoadEngine(options.PolicyPath);
            if (processContext is null)
            {
                // getcon() failed on an SELinux host: no domain to decide for, so every disk is denied.
                engine = new UnavailablePolicyEngine($"cannot tell csvmm's own SELinux domain: {host.ProcessContextError ?? "getcon() failed"}");
                processContext = "(unknown)";
            }
            log.Debug("SELinux: deciding with {Engine} as {Context}", engine.Description, processContext);
            Func<GatedDisk, DiskLabel> label;
            if (plan.KernelPolicy)
            {
                log.Debug("SELinux: disks are labelled by the kernel (fgetfilecon); --policy, --file-contexts and --trust-xattr do not apply");
                label = d => SelinuxHost.FileLabel(d.Handle, RealPath(d));
            }
            else
            {
                label = Labeler(options, engine);
            }
            var gate = new EntrypointGate(engine, plan.Mode, AvcOrigin.Current);
            var decisions = new List<EntrypointDecision>(disks.Count);
            foreach (var disk in disks)
            {
                EntrypointDecision d = gate.Check(processContext, label(disk));
                LogDecision(log, d, plan.Mode);
                decisions.Add(d);
            }
            VmDecision vm = gate.Combine(decisions);
            string? refusal = null;
            if (vm.PolicyAllows)
                log.Information("SELinux: VM context {VmContext}", vm.VmContext);
            else if (vm.Allowed)
                log.Warning("SELinux (permissive): would deny the VM: {Reason}", vm.DenialReason);
            else
                refusal = vm.DenialReason ?? "SELinux denied the VM";
            return new GateOutcome(plan, diskPaths, disks, vm, refusal) { ProcessContext = processContext, Marker = marker };
        }
        catch
        {
            foreach (var d in disks)
                d.Dispose();
            throw;
        }
    }

    private static void LogDecision(ILogger log, EntrypointDecision d, EnforcementMode mode)
    {
        foreach (var check in new[] { d.FileRead, d.TypeChange, d.Entrypoint })
        {
            if (check.AvcLine is null)
                continue;
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
    /// Exit codes: <see cref="ExitCodes.Usage"/> when the option cannot work on this host (no SELinux),
    /// <see cref="ExitCodes.Denied"/> when the transition fails or did not take effect.
    /// </summary>
    public static TransitionFailure? Transition(SecurityOptions options, GateOutcome gate, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(gate);
        if (!options.Transition)
            return null;
        if (gate.TransitionError is { } early)
            return early;
        if (gate.Decision is not { } vm || gate.ProcessContext is not { } processContext)
            return new(ExitCodes.Usage, "--selinux-transition needs the SELinux checks and at least one --disk: the VM's domain comes from its disks");
        if (!vm.PolicyAllows || vm.VmContext is null)
        {
            // Only reachable when the denial is not enforced (permissive): there is no VM domain to enter.
            log.Warning("SELinux ({Mode}): not re-executing csvmm in a VM domain: {Reason}", Name(vm.Mode), vm.DenialReason);
            return null;
        }
        string exec;
        try
        {
            exec = SelinuxTransition.ExecContext(processContext, vm.VmContext);
        }
        catch (SecurityPolicyException e)
        {
            return new(ExitCodes.Denied, "--selinux-transition: " + e.Message);
        }

        if (gate.Marker is { } marker)
        {
            if (marker.ExecContext != exec)
                return new(ExitCodes.Denied, $"--selinux-transition: re-executed in {marker.ExecContext}, but the VM's domain is now {exec}");
            string current;
            try
            {
                current = SelinuxHost.CurrentContext();
            }
            catch (SecurityPolicyException e)
            {
                return new(ExitCodes.Denied, "--selinux-transition: " + e.Message);
            }
            if (current != exec)
                return new(ExitCodes.Denied, $"--selinux-transition did not take effect: csvmm runs as {current}, not {exec}");
            Environment.SetEnvironmentVariable(SelinuxTransition.MarkerVariable, null);
            log.Information("SELinux: running in the VM's domain {Context}", current);
            return null;
        }

        log.Information("SELinux: re-executing csvmm in the VM's domain {Context}", exec);
        try
        {
            SelinuxTransition.ReExec(new TransitionMarker(processContext, exec));
        }
        catch (SecurityPolicyException e)
        {
            return new(ExitCodes.Denied, e.Message);
        }
        return new(ExitCodes.Internal, "execve returned without an error"); // ReExec never returns normally
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

    private static Func<GatedDisk, DiskLabel> Labeler(SecurityOptions options, IPolicyEngine engine)
    {
        if (options.TrustXattr)
            return d => DiskLabel.FromXattr(d.Handle, RealPath(d));

        FileContexts? contexts = null;
        string? failure = null;
        try
        {
            contexts = FileContexts.Load(options.FileContextsPath, FileTrust.RootOwned);
            if (engine is SepolEngine)
                contexts.Validate(engine);
        }
        catch (SecurityPolicyException e)
        {
            failure = e.Message;
        }
        return d => contexts?.LookupOpened(d.Handle) ?? DiskLabel.Unlabelled(RealPath(d), options.FileContextsPath, failure!);
    }

    private static string RealPath(GatedDisk d)
    {
        try
        {
            return new FileInfo(d.ReopenPath).LinkTarget ?? d.GivenPath;
        }
        catch (IOException)
        {
            return d.GivenPath;
        }
    }

    /// <summary>
    /// open(path, O_PATH|O_CLOEXEC): a descriptor that names the file (symlinks followed) but grants no
    /// access to its contents; then refuses what cannot be a disk, from fstat of that descriptor.
    /// </summary>
    internal static unsafe GatedDisk OpenPathOnly(string path)
    {
        if (string.IsNullOrEmpty(path)) throw new DiskException("disk path is empty");
        if (path.Contains('\0')) throw new DiskException($"{path.Replace('\0', '?')}: the path contains a NUL character");
        var handle = new SafeFileHandle(); // allocated before the fd exists, so nothing can fail between the two
        byte[] native = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        int fd;
        fixed (byte* p = native)
            fd = LibC.open(p, LibC.O_PATH | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = LibC.errno;
            handle.Dispose();
            throw new DiskException($"{path}: {DiskValidation.DescribeOpenError(errno, readOnly: true)}", errno);
        }
        Marshal.InitHandle(handle, fd);
        try
        {
            stat st;
            if (LibC.fstat(fd, &st) != 0)
            {
                int errno = LibC.errno;
                throw new DiskException($"{path}: cannot stat it: {DiskValidation.DescribeOpenError(errno, readOnly: true)}", errno);
            }
            DiskFileKind kind = DiskValidation.KindOf((uint)st.st_mode);
            if (DiskValidation.CheckKind(kind) is { } badKind)
                throw new DiskException($"{path}: {badKind}");
            // A block device's size needs an ioctl on a real descriptor: DiskOpener checks it after the gate.
            if (kind == DiskFileKind.RegularFile && DiskValidation.CheckSize(unchecked((ulong)(long)st.st_size)) is { } badSize)
                throw new DiskException($"{path}: {badSize}");
            return new GatedDisk(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }
}
