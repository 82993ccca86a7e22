using System.CommandLine;
using Csvmm.Machine;
using Csvmm.Security;
using Serilog.Events;

namespace Csvmm.Cli;

/// <summary>How COM1 is connected on the host.</summary>
public sealed record SerialSpec(SerialMode Mode, string? Path);

/// <summary>The validated command line.</summary>
public sealed record CliOptions(MachineConfig Machine, SerialSpec Serial, LogEventLevel LogLevel, string? LogFile, SecurityOptions Security)
{
    /// <summary>No --kernel or --firmware was given: the machine boots its disks through the built-in firmware.</summary>
    public bool BuiltInFirmware { get; init; }

    /// <summary>--seccomp: the per-thread system-call filters (default kill).</summary>
    public Csvmm.Sys.SeccompMode Seccomp { get; init; } = Csvmm.Sys.SeccompMode.Kill;

    /// <summary>--seccomp-selftest ROLE (hidden, for tests): a thread of that kind makes a call on no list once filtered.</summary>
    public Csvmm.Sys.ThreadRole? SeccompSelfTest { get; init; }

    /// <summary>--qmp unix:PATH: the QMP control socket's path, or null.</summary>
    public string? QmpSocket { get; init; }

    /// <summary>--incoming file:PATH: the snapshot the machine is restored from, or null.</summary>
    public string? Incoming { get; init; }

    /// <summary>--incoming unix:PATH or tcp:HOST:PORT: where csvmm waits for a live migration's source, or null.</summary>
    public Csvmm.Machine.Migration.MigrationUri? IncomingStream { get; init; }

    /// <summary>--firmware-log FILE: where the firmware's debug port (0x402) output goes, or null (no debug port).</summary>
    public string? FirmwareLog { get; init; }
}

/// <summary>
/// <c>--qmp unix:PATH[,server[=on]][,wait=off|nowait]</c>, QEMU's chardev syntax for a listening monitor socket. csvmm
/// only listens (server), never waits for a client before starting the guest, and only on Unix sockets.
/// </summary>
public static class QmpSpecParser
{
    public static bool TryParse(string text, out string? path, out string error)
    {
        path = null;
        error = "";
        if (!text.StartsWith("unix:", StringComparison.Ordinal))
        {
            error = $"--qmp {text}: expected unix:PATH (csvmm's control socket is a Unix socket)";
            return false;
        }
        if (text.Contains('\0'))
        {
            error = "--qmp: a path cannot contain a NUL character";
            return false;
        }
        var parts = text[5..].Split(',');
        if (parts[0].Length == 0)
        {
            error = $"--qmp {text}: the socket path is empty";
            return false;
        }
        foreach (var opt in parts.Skip(1))
        {
            switch (opt)
            {
                case "server" or "server=on" or "wait=off" or "nowait":
                    break;
                case "server=off":
                    error = $"--qmp {text}: csvmm listens on its control socket; connecting out (server=off) is not supported";
                    return false;
                case "wait=on" or "wait":
                    error = $"--qmp {text}: waiting for a client before the guest starts (wait=on) is not supported";
                    return false;
                default:
                    error = $"--qmp {text}: unknown option '{opt}' (server=on, wait=off)";
                    return false;
            }
        }
        path = Path.GetFullPath(parts[0]);
        return true;
    }
}

/// <summary>The firmware csvmm boots disks with when neither --kernel nor --firmware is given.</summary>
public static class BuiltInFirmware
{
    /// <summary>&lt;directory of the csvmm executable&gt;/firmware/bios.bin (out/firmware/bios.bin, installed by ./build.sh).</summary>
    public static string Path => System.IO.Path.Combine(AppContext.BaseDirectory, "firmware", "bios.bin");
}

/// <summary>The validated command line of <c>csvmm check</c>.</summary>
public sealed record CheckOptions(IReadOnlyList<string> Disks, SecurityOptions Security);

/// <summary>The SELinux options, shared by <c>csvmm</c> and <c>csvmm check</c> (one instance per command).</summary>
public sealed class SecurityOptionSet
{
    public Option<string?> Selinux { get; } = new("--selinux") { Description = "SELinux entrypoint checks: enforcing, permissive or disabled (default: follow the host; see README)", HelpName = "MODE" };
    public Option<string?> Policy { get; } = new("--policy") { Description = "Compiled standalone SELinux policy (default: policy/policy.33 beside the csvmm executable)", HelpName = "FILE" };
    public Option<string?> FileContexts { get; } = new("--file-contexts") { Description = "Trusted image path to label mapping (default: file_contexts beside the policy)", HelpName = "FILE" };
    public Option<string?> Context { get; } = new("--context") { Description = $"Security context csvmm acts as (default {StandalonePolicy.DefaultProcessContext})", HelpName = "CTX" };
    public Option<bool> TrustXattr { get; } = new("--trust-xattr") { Description = "Label disks by their security.selinux attribute (self-asserted without SELinux) instead of file_contexts" };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Selinux, Policy, FileContexts, Context, TrustXattr })
            command.Options.Add(o);
    }

    /// <summary>Validates the SELinux options, or returns a one-line usage error.</summary>
    public (SecurityOptions? Options, string? Error) ToOptions(ParseResult r)
    {
        EnforcementMode? mode = null;
        if (r.GetValue(Selinux) is { } modeText)
        {
            mode = SecurityOptions.ParseMode(modeText);
            if (mode is null) return (null, $"--selinux {modeText}: expected enforcing, permissive or disabled");
        }
        string? policy = r.GetValue(Policy);
        if (policy is { Length: 0 }) return (null, "--policy: empty path");
        string? fileContexts = r.GetValue(FileContexts);
        if (fileContexts is { Length: 0 }) return (null, "--file-contexts: empty path");
        string? context = r.GetValue(Context);
        if (context is { Length: 0 }) return (null, "--context: empty context");
        string policyPath = policy is null ? SecurityOptions.DefaultPolicyPath : Path.GetFullPath(policy);
        return (new SecurityOptions(mode, policyPath,
            fileContexts is null ? SecurityOptions.DefaultFileContextsPath(policyPath) : Path.GetFullPath(fileContexts),
            context ?? StandalonePolicy.DefaultProcessContext, r.GetValue(TrustXattr), UseHostContext: context is null), null);
    }
}

/// <summary>csvmm's command-line grammar (System.CommandLine) and the validation that turns it into <see cref="CliOptions"/>.</summary>
public sealed class CommandLine
{
    public const int MaxCpus = 255; // xAPIC ids 0..254; the host's KVM limit is checked when the VM is created

    public RootCommand Root { get; }
    public Option<FileInfo?> Kernel { get; } = new("--kernel") { Description = "Linux kernel to boot: a bzImage, or an ELF vmlinux with a PVH entry note", HelpName = "FILE" };
    public Option<FileInfo?> Initrd { get; } = new("--initrd") { Description = "Initial ramdisk for --kernel", HelpName = "FILE" };
    public Option<string?> Append { get; } = new("--append") { Description = "Kernel command line for --kernel", HelpName = "STR" };
    public Option<FileInfo?> Firmware { get; } = new("--firmware") { Description = "BIOS image (a multiple of 64 KiB) mapped below 4 GiB; the vCPU starts at F000:FFF0 (default with only --disk: the built-in SeaBIOS, firmware/bios.bin beside csvmm)", HelpName = "FILE" };
    /// <summary>IDE positions: primary/secondary × master/slave.</summary>
    public const int MaxIdeDisks = 4;
    /// <summary>virtio-blk functions: one per free PCI slot (2-31).</summary>
    public const int MaxVirtioDisks = 30;

    public Option<string[]> Disk { get; } = new("--disk") { Description = "Disk image: PATH[,if=virtio|ide][,readonly=on][,cache=writeback|none] (repeatable)", HelpName = "SPEC", AllowMultipleArgumentsPerToken = false };
    public Option<string> Memory { get; } = new("--memory", "-m") { Description = "Guest RAM, QEMU-style size (512M, 2G); default 512M", HelpName = "SIZE", DefaultValueFactory = _ => "512M" };
    public Option<int> Cpus { get; } = new("--cpus") { Description = "Number of vCPUs; default 1", HelpName = "N", DefaultValueFactory = _ => 1 };
    public Option<string> Serial { get; } = new("--serial") { Description = "COM1: stdio (default), file:PATH, or none", HelpName = "stdio|file:PATH|none", DefaultValueFactory = _ => "stdio" };
    public Option<bool> NoReboot { get; } = new("--no-reboot") { Description = "Exit (code 0) when the guest resets instead of rebooting it" };
    public Option<string> LogLevel { get; } = new("--log-level") { Description = "verbose, debug, information, warning (default), error, fatal", HelpName = "LEVEL", DefaultValueFactory = _ => "warning" };
    public Option<FileInfo?> LogFile { get; } = new("--log-file") { Description = "Also write the log as JSON lines to FILE", HelpName = "FILE" };
    public Option<FileInfo?> FirmwareLog { get; } = new("--firmware-log") { Description = "Write the firmware's debug log (SeaBIOS's port 0x402, QEMU's -debugcon) to FILE; without it the port is absent and SeaBIOS logs nothing", HelpName = "FILE" };
    public Option<string?> Qmp { get; } = new("--qmp") { Description = "QMP control socket: unix:PATH[,server=on][,wait=off] (created 0600; one client at a time)", HelpName = "unix:PATH" };
    public Option<string?> Incoming { get; } = new("--incoming") { Description = "Restore the machine from a snapshot (written by QMP migrate to file:PATH), or wait at unix:PATH / tcp:HOST:PORT for a live migration from another csvmm (QMP migrate there); the machine's kernel/firmware, disks, memory and vCPUs come from the source", HelpName = "file:PATH|unix:PATH|tcp:HOST:PORT" };
    public Option<double?> Timeout { get; } = new("--timeout") { Description = "Stop the VM after SECONDS (exit code 7)", HelpName = "SECONDS" };
    public Option<string> Seccomp { get; } = new("--seccomp") { Description = "Per-thread system-call filters for the vCPU, device I/O and console threads: kill (default: any other call kills csvmm with SIGSYS and the kernel logs it), log (allowed and logged), off", HelpName = "kill|log|off", DefaultValueFactory = _ => "kill" };
    public Option<string?> SeccompSelfTest { get; } = new("--seccomp-selftest") { Description = "Test hook: a thread of this kind (vcpu, device-io, console) makes a system call on no list once filtered", Hidden = true };

    public SecurityOptionSet Security { get; } = new();
    /// <summary>--selinux-transition (csvmm only, not check): re-exec in the VM's SELinux domain before guest RAM exists.</summary>
    public Option<bool> SelinuxTransition { get; } = new("--selinux-transition") { Description = "On an SELinux host, re-execute csvmm in the VM's domain (setexeccon + exec) once the disks are allowed, before guest RAM is created" };

    /// <summary><c>csvmm check</c>: the SELinux decision for disks, without creating a VM.</summary>
    public Command Check { get; } = new("check", "Show the SELinux entrypoint decision for disks (file read, VM context, entrypoint) without creating a VM; exit 0 when the policy allows, 6 when it denies");
    public Option<string[]> CheckDisk { get; } = new("--disk") { Description = "Disk image PATH (or a full --disk SPEC) to decide on (repeatable)", HelpName = "PATH", AllowMultipleArgumentsPerToken = false };
    public Option<string?> CheckSnapshot { get; } = new("--snapshot") { Description = "A saved VM (snapshot) to decide on as --incoming would: an image like a disk, then restore", HelpName = "PATH" };
    public SecurityOptionSet CheckSecurity { get; } = new();

    public CommandLine()
    {
        Root = new RootCommand("csvmm: a KVM virtual machine monitor that boots Linux guests from kernels, firmware and disk images");
        foreach (var o in new Option[] { Kernel, Initrd, Append, Firmware, Disk, Memory, Cpus, Serial, NoReboot, LogLevel, LogFile, FirmwareLog, Timeout, Qmp, Incoming, Seccomp, SeccompSelfTest })
            Root.Options.Add(o);
        Security.AddTo(Root);
        Root.Options.Add(SelinuxTransition);
        Check.Options.Add(CheckDisk);
        Check.Options.Add(CheckSnapshot);
        CheckSecurity.AddTo(Check);
        Root.Subcommands.Add(Check);
        // A command with subcommands and no action makes System.CommandLine demand a subcommand; the root runs a VM.
        // Program.Main replaces this placeholder with the real action.
        Root.SetAction(_ => ExitCodes.Internal);
    }

    /// <summary>Validates a <c>csvmm check</c> parse result, or returns a one-line usage error.</summary>
    public (CheckOptions? Options, string? Error) ToCheckOptions(ParseResult r)
    {
        if (r.Errors.Count > 0) return (null, r.Errors[0].Message);
        var disks = new List<string>();
        foreach (var d in r.GetValue(CheckDisk) ?? [])
        {
            if (!DiskSpecParser.TryParse(d, out var spec, out string err)) return (null, err);
            disks.Add(spec!.Path);
        }
        if (r.GetValue(CheckSnapshot) is { Length: > 0 } snapshot) disks.Add(Path.GetFullPath(snapshot));
        if (disks.Count == 0) return (null, "check: give at least one --disk PATH (or --snapshot PATH)");
        var (security, error) = CheckSecurity.ToOptions(r);
        if (security is null) return (null, error);
        return (new CheckOptions(disks, security), null);
    }

    /// <summary>Validates a parse result into options, or returns a one-line usage error.</summary>
    public (CliOptions? Options, string? Error) ToOptions(ParseResult r)
    {
        if (r.Errors.Count > 0) return (null, r.Errors[0].Message);

        string memText = r.GetValue(Memory) ?? "512M";
        if (!SizeParser.TryParse(memText, out ulong mem, out string memError)) return (null, $"--memory: {memError}");
        if (mem < (1UL << 20)) return (null, $"--memory {memText}: at least 1M is needed");
        ulong hostMem = HostInfo.TotalMemoryBytes();
        if (hostMem > 0 && mem > hostMem)
            return (null, $"--memory {memText}: larger than this host's {SizeParser.Format(hostMem & ~((1UL << 20) - 1))} of RAM");
        if ((mem & 0xFFF) != 0) return (null, $"--memory {memText}: must be a multiple of 4K");

        int cpus = r.GetValue(Cpus);
        if (cpus < 1 || cpus > MaxCpus) return (null, $"--cpus {cpus}: must be between 1 and {MaxCpus}");

        var kernel = r.GetValue(Kernel);
        var initrd = r.GetValue(Initrd);
        var append = r.GetValue(Append);
        var firmware = r.GetValue(Firmware);
        if (kernel is not null && firmware is not null) return (null, "--kernel and --firmware cannot be used together");
        if (kernel is null && (initrd is not null || append is not null)) return (null, "--initrd and --append need --kernel");

        var disks = new List<DiskSpec>();
        foreach (var d in r.GetValue(Disk) ?? [])
        {
            if (!DiskSpecParser.TryParse(d, out var spec, out string err)) return (null, err);
            disks.Add(spec!);
        }
        int ideCount = disks.Count(d => d.Interface == DiskInterface.Ide);
        if (ideCount > MaxIdeDisks)
            return (null, $"--disk: {ideCount} IDE disks given, but the IDE controller has {MaxIdeDisks} positions (primary/secondary master/slave)");
        if (disks.Count - ideCount > MaxVirtioDisks)
            return (null, $"--disk: {disks.Count - ideCount} virtio disks given; at most {MaxVirtioDisks} fit on the PCI bus");
        string? incoming = null;
        Csvmm.Machine.Migration.MigrationUri? incomingStream = null;
        if (r.GetValue(Incoming) is { } incomingText)
        {
            if (!incomingText.StartsWith("file:", StringComparison.Ordinal) || incomingText.Length == 5)
            {
                if (incomingText.StartsWith("file:", StringComparison.Ordinal)
                    || Csvmm.Machine.Migration.MigrationUri.TryParse(incomingText, out string? problem) is not { } uri)
                    return (null, $"--incoming {incomingText}: expected file:PATH, unix:PATH or tcp:HOST:PORT");
                incomingStream = uri;
            }
            if (kernel is not null || firmware is not null || disks.Count > 0)
                return (null, "--incoming restores the machine a snapshot describes: --kernel, --firmware and --disk cannot be given with it");
            if (r.GetResult(Memory) is { Implicit: false } || r.GetResult(Cpus) is { Implicit: false })
                return (null, "--incoming restores the machine a snapshot describes: --memory and --cpus cannot be given with it");
            if (incomingStream is null) incoming = Path.GetFullPath(incomingText[5..]);
        }
        bool builtInFirmware = kernel is null && firmware is null && incoming is null && incomingStream is null;
        if (incoming is null && incomingStream is null && kernel is null && firmware is null && disks.Count == 0)
            return (null, "nothing to boot: give --disk IMAGE (booted by the built-in firmware), --kernel FILE or --firmware FILE (see --help)");

        string serialText = r.GetValue(Serial) ?? "stdio";
        SerialSpec serial;
        if (serialText == "stdio") serial = new SerialSpec(SerialMode.Stdio, null);
        else if (serialText == "none") serial = new SerialSpec(SerialMode.None, null);
        else if (serialText.StartsWith("file:", StringComparison.Ordinal) && serialText.Length > 5) serial = new SerialSpec(SerialMode.File, serialText[5..]);
        else return (null, $"--serial {serialText}: expected stdio, file:PATH or none");

        Csvmm.Sys.SeccompMode seccomp;
        switch (r.GetValue(Seccomp))
        {
            case "kill": seccomp = Csvmm.Sys.SeccompMode.Kill; break;
            case "log": seccomp = Csvmm.Sys.SeccompMode.Log; break;
            case "off": seccomp = Csvmm.Sys.SeccompMode.Off; break;
            case var other: return (null, $"--seccomp {other}: expected kill, log or off");
        }
        Csvmm.Sys.ThreadRole? selfTest = null;
        if (r.GetValue(SeccompSelfTest) is { } roleText)
        {
            selfTest = roleText switch
            {
                "vcpu" => Csvmm.Sys.ThreadRole.Vcpu,
                "device-io" => Csvmm.Sys.ThreadRole.DeviceIo,
                "console" => Csvmm.Sys.ThreadRole.Console,
                _ => null,
            };
            if (selfTest is null) return (null, $"--seccomp-selftest {roleText}: expected vcpu, device-io or console");
        }
        string levelText = r.GetValue(LogLevel) ?? "warning";
        LogEventLevel? level = levelText.ToLowerInvariant() switch
        {
            "verbose" or "trace" => LogEventLevel.Verbose,
            "debug" => LogEventLevel.Debug,
            "information" or "info" => LogEventLevel.Information,
            "warning" or "warn" => LogEventLevel.Warning,
            "error" => LogEventLevel.Error,
            "fatal" => LogEventLevel.Fatal,
            _ => null,
        };
        if (level is null) return (null, $"--log-level {levelText}: expected verbose, debug, information, warning, error or fatal");

        var (security, securityError) = Security.ToOptions(r);
        if (security is null) return (null, securityError);
        if (r.GetValue(SelinuxTransition))
        {
            if (security.Mode == EnforcementMode.Disabled) return (null, "--selinux-transition cannot be combined with --selinux disabled: the VM's domain comes from the SELinux checks");
            if (disks.Count == 0) return (null, "--selinux-transition needs a --disk: the VM's domain comes from its disks' labels");
            security = security with { Transition = true };
        }

        string? qmp = null;
        if (r.GetValue(Qmp) is { } qmpText)
        {
            if (!QmpSpecParser.TryParse(qmpText, out qmp, out string qmpError)) return (null, qmpError);
        }

        double? timeout = r.GetValue(Timeout);
        if (timeout is { } t && (!(t > 0) || t > 365 * 86400)) return (null, $"--timeout {t}: must be a positive number of seconds");

        var config = new MachineConfig
        {
            Kernel = kernel?.FullName,
            Initrd = initrd?.FullName,
            Append = append ?? "",
            Firmware = builtInFirmware ? BuiltInFirmware.Path : firmware?.FullName,
            Disks = disks,
            MemoryBytes = mem,
            Cpus = cpus,
            NoReboot = r.GetValue(NoReboot),
            Timeout = timeout is { } s ? TimeSpan.FromSeconds(s) : null,
            // Not an option: lets tests point csvmm at a missing KVM device to check the error path.
            KvmDevice = Environment.GetEnvironmentVariable("CSVMM_KVM_DEVICE") is { Length: > 0 } dev ? dev : "/dev/kvm",
        };
        return (new CliOptions(config, serial, level.Value, r.GetValue(LogFile)?.FullName, security) { BuiltInFirmware = builtInFirmware, QmpSocket = qmp, Incoming = incoming, IncomingStream = incomingStream, FirmwareLog = r.GetValue(FirmwareLog)?.FullName, Seccomp = seccomp, SeccompSelfTest = selfTest }, null);
    }
}

/// <summary>Facts about the host read once.</summary>
public static class HostInfo
{
    /// <summary>MemTotal from /proc/meminfo in bytes, or 0 when unknown.</summary>
    public static ulong TotalMemoryBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && ulong.TryParse(parts[1], out ulong kib)) return kib * 1024;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }
}
