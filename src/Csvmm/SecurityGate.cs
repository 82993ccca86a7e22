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
public sealed record SecurityOptions(EnforcementMode? Mode, string PolicyPath, string FileContextsPath, string ProcessContext, bool TrustXattr)
{
    /// <summary>&lt;directory of the csvmm executable&gt;/policy/policy.33 (out/policy/policy.33 beside out/csvmm).</summary>
    public static string DefaultPolicyPath => Path.Combine(AppContext.BaseDirectory, "policy", StandalonePolicy.PolicyFileName);

    /// <summary>The file_contexts beside <paramref name="policyPath"/>.</summary>
    public static string DefaultFileContextsPath(string policyPath) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(policyPath)) ?? "/", StandalonePolicy.FileContextsFileName);

    /// <summary>Follow the host, shipped policy, default context, file_contexts labels.</summary>
    public static SecurityOptions Default => new(null, DefaultPolicyPath, DefaultFileContextsPath(DefaultPolicyPath),
        StandalonePolicy.DefaultProcessContext, false);

    /// <summary>Parses an --selinux value (enforcing, permissive, disabled); null when it is none of them.</summary>
    public static EnforcementMode? ParseMode(string text) => text switch
    {
        "enforcing" => EnforcementMode.Enforcing,
        "permissive" => EnforcementMode.Permissive,
        "disabled" => EnforcementMode.Disabled,
        _ => null,
    };
}

/// <summary>Whether the host kernel runs SELinux.</summary>
public enum HostSelinux
{
    /// <summary>No SELinux: /sys/fs/selinux is absent, or libselinux's is_selinux_enabled() says 0.</summary>
    Absent,
    /// <summary>SELinux is enabled: the kernel's policy, through libselinux, must decide.</summary>
    Enabled,
}

/// <summary>How the gate will run: the effective mode, or a refusal that stops csvmm before any disk is touched.</summary>
/// <param name="Mode">The effective enforcement mode.</param>
/// <param name="Refusal">Non-null: deny everything with this one-line reason (exit code 6).</param>
/// <param name="Explanation">What was decided and why, for the log.</param>
public readonly record struct GatePlan(EnforcementMode Mode, string? Refusal, string Explanation);

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
/// label of THAT descriptor is looked up (file_contexts by its real path, or its xattr with
/// --trust-xattr), the policy decides, and an allowed disk is later reopened through
/// <c>/proc/self/fd/N</c> so the file used is the file checked.
/// </summary>
public static class SecurityGate
{
    /// <summary>
    /// Chooses the mode: an explicit --selinux wins, except that enforcing on an SELinux host needs
    /// the libselinux engine (not implemented) and is refused; without --selinux, a host without
    /// SELinux gets the standalone policy in permissive mode and an SELinux host is refused (fail closed).
    /// </summary>
    public static GatePlan Plan(EnforcementMode? requested, HostSelinux host, string hostDetail)
    {
        if (host == HostSelinux.Enabled)
        {
            return requested switch
            {
                EnforcementMode.Disabled => new(EnforcementMode.Disabled, null, $"SELinux checks disabled by --selinux disabled ({hostDetail})"),
                EnforcementMode.Permissive => new(EnforcementMode.Permissive, null,
                    $"{hostDetail}; --selinux permissive: deciding with the standalone policy, enforcing nothing"),
                _ => new(EnforcementMode.Enforcing,
                    $"{hostDetail}: enforcing it needs csvmm's libselinux engine, which is not implemented yet; " +
                    "use --selinux permissive (standalone policy, not enforced) or --selinux disabled",
                    $"{hostDetail}; refusing to enforce without the libselinux engine"),
            };
        }
        return requested switch
        {
            null => new(EnforcementMode.Permissive, null, $"{hostDetail}: standalone policy in permissive mode (denials are logged, not enforced)"),
            EnforcementMode.Disabled => new(EnforcementMode.Disabled, null, $"SELinux checks disabled by --selinux disabled ({hostDetail})"),
            var m => new(m.Value, null, $"{hostDetail}: standalone policy in {m.Value.ToString().ToLowerInvariant()} mode"),
        };
    }

    /// <summary>
    /// Opens every disk O_PATH, labels and checks it, and logs the decisions: granted AVC lines at
    /// Debug, denials at Warning (permissive) or Error (enforcing), the VM context at Information.
    /// </summary>
    /// <exception cref="DiskException">A path that cannot be a disk (missing, a directory, empty...): exit code 3, nothing opened for I/O.</exception>
    public static GateOutcome Evaluate(SecurityOptions options, IReadOnlyList<string> diskPaths, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(diskPaths);
        var (host, detail) = SelinuxHost.Detect();
        GatePlan plan = Plan(options.Mode, host, detail);
        log.Information("SELinux: {Plan}", plan.Explanation);
        if (plan.Refusal is not null)
            return new GateOutcome(plan, diskPaths, [], null, plan.Refusal);
        if (plan.Mode == EnforcementMode.Disabled || diskPaths.Count == 0)
            return new GateOutcome(plan, diskPaths, [], null, null);

        var disks = new List<GatedDisk>(diskPaths.Count);
        try
        {
            foreach (string path in diskPaths)
                disks.Add(OpenPathOnly(path));

            IPolicyEngine engine = LoadEngine(options.PolicyPath);
            log.Debug("SELinux: deciding with {Engine} as {Context}", engine.Description, options.ProcessContext);
            Func<GatedDisk, DiskLabel> label = Labeler(options, engine);
            var gate = new EntrypointGate(engine, plan.Mode, AvcOrigin.Current);
            var decisions = new List<EntrypointDecision>(disks.Count);
            foreach (var disk in disks)
            {
                EntrypointDecision d = gate.Check(options.ProcessContext, label(disk));
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
            return new GateOutcome(plan, diskPaths, disks, vm, refusal);
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
            else if (mode == EnforcementMode.Enforcing)
                log.Error("{Avc}", check.AvcLine);
            else
                log.Warning("{Avc}", check.AvcLine);
        }
        // A failure (no policy, no label, invalid context) has no AVC line to explain it.
        if (d.Failed && mode == EnforcementMode.Permissive)
            log.Warning("SELinux (permissive): would deny disk {Disk}: {Reason}", d.DiskPath, d.DenialReason);
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

/// <summary>Detects whether the host kernel runs SELinux.</summary>
public static partial class SelinuxHost
{
    /// <summary>The selinuxfs mount point.</summary>
    public const string SelinuxFs = "/sys/fs/selinux";

    /// <summary>
    /// <see cref="HostSelinux.Absent"/> when /sys/fs/selinux does not exist or libselinux's
    /// is_selinux_enabled() returns 0; otherwise <see cref="HostSelinux.Enabled"/> (also when
    /// libselinux cannot be asked: fail closed).
    /// </summary>
    public static (HostSelinux State, string Detail) Detect()
    {
        if (!Directory.Exists(SelinuxFs))
            return (HostSelinux.Absent, $"host without SELinux (no {SelinuxFs})");
        int enabled;
        try
        {
            enabled = IsSelinuxEnabled();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return (HostSelinux.Enabled, $"host with {SelinuxFs} but libselinux.so.1 is not usable ({e.Message})");
        }
        return enabled == 0
            ? (HostSelinux.Absent, "host without SELinux (is_selinux_enabled() = 0)")
            : (HostSelinux.Enabled, $"host with SELinux enabled (is_selinux_enabled() = {enabled})");
    }

    [LibraryImport("libselinux.so.1", EntryPoint = "is_selinux_enabled")]
    private static partial int IsSelinuxEnabled();
}
