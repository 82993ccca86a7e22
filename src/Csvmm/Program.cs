using System.CommandLine;
using System.Runtime.InteropServices;
using Csvmm.Boot;
using Csvmm.Control;
using Csvmm.Devices;
using Csvmm.Kvm;
using Csvmm.Machine;
using Csvmm.Memory;
using Csvmm.Security;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

// csvmm is a KVM monitor gated by libsepol/libselinux and /proc: Linux only (as Csvmm.Security).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Csvmm.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var cli = new CommandLine();
        int exit = ExitCodes.Ok;
        cli.Root.SetAction(parse =>
        {
            var (options, error) = cli.ToOptions(parse);
            if (options is null) { exit = UsageError(error!); return exit; }
            exit = Run(options);
            return exit;
        });
        cli.Check.SetAction(parse =>
        {
            var (options, error) = cli.ToCheckOptions(parse);
            if (options is null) { exit = UsageError(error!); return exit; }
            exit = CheckCommand.Run(options, Console.Out, Console.Error);
            return exit;
        });
        ParseResult result = cli.Root.Parse(args);
        if (result.Errors.Count > 0) return UsageError(result.Errors[0].Message);
        int code = result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        return code;
    }

    private static int UsageError(string message)
    {
        Console.Error.WriteLine($"csvmm: {message}");
        Console.Error.WriteLine("Try 'csvmm --help' for more information.");
        return ExitCodes.Usage;
    }

    /// <summary>Prints a fatal one-line error and returns its exit code.</summary>
    private static int Fail(int code, string message)
    {
        Console.Error.WriteLine($"csvmm: {message}");
        return code;
    }

    internal static int Run(CliOptions options)
    {
        using var log = CreateLogger(options);
        var config = options.Machine;
        if (ConfineThreads(options) is { } seccompProblem) return Fail(ExitCodes.Internal, seccompProblem);

        // --incoming: the machine is the one the snapshot or the migration's source describes; a snapshot file is checked
        // whole before anything else, a stream's header and spec are (the rest is checked as it arrives).
        Csvmm.Machine.Migration.IIncomingMachine? incoming = null;
        Csvmm.Machine.Migration.MigrationReceiver? receiver = null;
        string? snapshotFile = null;
        string? sourceContext = null;
        try
        {
            if (options.Incoming is { } snapshotPath)
            {
                var reader = Csvmm.Machine.Snapshot.SnapshotReader.Open(snapshotPath);
                try { incoming = new Csvmm.Machine.Migration.SnapshotIncoming(reader); }
                catch { reader.Dispose(); throw; }
                snapshotFile = reader.Path;
            }
            else if (options.IncomingStream is { } uri)
            {
                var listener = uri.Listen();
                log.Information("waiting for a migration's source on {Uri}", uri.Text);
                var socket = uri.Accept(listener, timeout: null);
                var (pid, uid) = PeerCredentials(socket);
                log.Information("migration source connected (pid {Pid}, uid {Uid})", pid, uid);
                if (uri.UnixPath is not null && SelinuxHost.Detect().State == HostSelinux.Enabled)
                {
                    try { sourceContext = SelinuxHost.PeerContext((int)socket.Handle); }
                    catch (SecurityPolicyException e) { log.Warning("the migration source's security context: {Error}", e.Message); }
                }
                incoming = receiver = Csvmm.Machine.Migration.MigrationReceiver.Start(new System.Net.Sockets.NetworkStream(socket, ownsSocket: true), uri.Text);
            }
            if (incoming is not null)
            {
                var spec = incoming.Spec;
                config = MachineConfig.For(spec) with
                {
                    NoReboot = config.NoReboot || spec.NoReboot, Timeout = config.Timeout ?? spec.Timeout, KvmDevice = config.KvmDevice,
                };
            }
        }
        catch (Csvmm.Machine.Snapshot.SnapshotException e)
        {
            incoming?.Dispose();
            return Fail(ExitCodes.BadInput, e.Message);
        }
        using var incomingMachine = incoming;
        int Refused(int code, string message)
        {
            receiver?.Refuse(message);
            return Fail(code, message);
        }

        // Input files are checked up front so a missing or unreadable one is one clear line, before KVM is touched.
        if (options.BuiltInFirmware && !File.Exists(config.Firmware))
            return Fail(ExitCodes.BadInput, $"booting from --disk needs the built-in firmware, and {config.Firmware} is missing (./build.sh installs it from Debian's seabios): give --firmware FILE or --kernel FILE");
        foreach (var (role, path) in new[] { ("kernel", config.Kernel), ("initrd", config.Initrd), ("firmware", config.Firmware) })
            if (path is not null && InputFile.Check(path, role) is { } problem)
                return Fail(ExitCodes.BadInput, problem);

        // The SELinux entrypoint gate decides on every disk before any is opened for reading or writing: each path
        // is opened O_PATH only, labelled and checked; a denial in enforcing mode stops csvmm here (exit code 6).
        // Only the disks it admits can be opened at all (DiskOpener takes nothing but an AdmittedDisk).
        var securityGate = new DiskGate(options.Security, log);
        GateOutcome gate;
        try
        {
            // A snapshot being restored is a VM image: it passes the same three questions as a disk (read it, which VM
            // type it leads to, may it enter that type), after the disks, and the VM's context comes from it.
            var images = config.Disks.Select(d => d.Path).ToList();
            if (snapshotFile is not null) images.Add(snapshotFile);
            gate = securityGate.Admit(images);
        }
        catch (Csvmm.Block.DiskException e)
        {
            return Refused(ExitCodes.BadInput, e.Message);
        }

        // Admitted disks are opened (and locked, as QEMU does) through the checked descriptors, before anything else
        // runs; they stay open, holding their locks, for the life of the process.
        var disks = new List<Csvmm.Block.RawDisk>();
        using (gate)
        {
            if (gate.Refusal is { } refusal)
                return Refused(ExitCodes.Denied, refusal);
            // --selinux-transition: re-exec in the VM's SELinux domain now, before any disk is opened for I/O or guest RAM exists.
            if (securityGate.Transition(gate) is { } transition)
                return Fail(ExitCodes.ForTransition(transition.Kind), transition.Message);
            try
            {
                for (int i = 0; i < config.Disks.Count; i++)
                {
                    var d = config.Disks[i];
                    // A migration's destination opens the disks unlocked: the source holds them until its last write.
                    disks.Add(Csvmm.Block.DiskOpener.Open(gate.Disks[i], d.ReadOnly,
                        d.Cache == DiskCache.None ? Csvmm.Block.DiskCacheMode.None : Csvmm.Block.DiskCacheMode.Writeback,
                        m => log.Warning("{Warning}", m), deferLock: receiver is not null));
                }
            }
            catch (Csvmm.Block.DiskException e)
            {
                foreach (var d in disks) d.Dispose();
                return Refused(ExitCodes.BadInput, e.Message);
            }
        }
        // The VM's management operations (QMP commands) are decided by the same engine and mode, on the VM's context.
        (ManagementGate Gate, bool KernelPolicy, string? ProcessContext)? management =
            gate.Management is { } mg ? (mg, gate.Plan.KernelPolicy, gate.ProcessContext) : null;
        // Restoring and receiving a migration are management operations of their own: may this process restore the VM the
        // snapshot holds; may the source (the socket peer's context on an SELinux host, else csvmm's own) send it here.
        if (incoming is not null && management is { } mgmt && (receiver is null ? mgmt.ProcessContext : sourceContext ?? (mgmt.KernelPolicy ? null : mgmt.ProcessContext)) is var subject)
        {
            var operation = receiver is null ? VmOperation.Restore : VmOperation.MigrateIn;
            string permission = ManagementGate.PermissionFor(operation);
            ManagementDecision d = subject is null
                ? new ManagementDecision(false, mgmt.Gate.Mode != EnforcementMode.Enforcing, null, "the source's security context is unknown")
                : mgmt.Gate.Check(subject, operation, $"incoming:{incoming.Source}");
            if (d.AvcLine is not null)
            {
                if (d.PolicyAllows) log.Debug("{Avc}", d.AvcLine);
                else if (d.Allowed) log.Warning("{Avc}", d.AvcLine);
                else log.Error("{Avc}", d.AvcLine);
            }
            if (!d.Allowed)
            {
                foreach (var dk in disks) dk.Dispose();
                return Refused(ExitCodes.Denied, $"SELinux denied {{ {permission} }} of {incoming.Source}: {d.DenialReason}");
            }
        }
        var attached = new List<AttachedDisk>(disks.Count);
        for (int i = 0; i < disks.Count; i++)
            attached.Add(new AttachedDisk(config.Disks[i].Interface, disks[i], config.Disks[i].Path));
        config = config with { AttachedDisks = attached };

        try
        {
            return RunMachine(options, log, config, management, incoming);
        }
        finally
        {
            foreach (var d in disks) d.Dispose();
        }
    }

    private static int RunMachine(CliOptions options, Serilog.Core.Logger log, MachineConfig config, (ManagementGate Gate, bool KernelPolicy, string? ProcessContext)? management,
        Csvmm.Machine.Migration.IIncomingMachine? incoming)
    {
        ISerialOutput serialOut;
        HostSerialOutput? hostOut = null;
        try
        {
            serialOut = options.Serial.Mode switch
            {
                SerialMode.Stdio => hostOut = HostSerialOutput.ToStdout(),
                SerialMode.File => hostOut = HostSerialOutput.ToFile(options.Serial.Path!),
                _ => new NullSerialOutput(),
            };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(ExitCodes.BadInput, $"--serial {options.Serial.Path}: {e.Message}");
        }
        HostSerialOutput? firmwareLog = null;
        if (options.FirmwareLog is { } firmwareLogPath)
        {
            try
            {
                firmwareLog = HostSerialOutput.ToFile(firmwareLogPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                hostOut?.Dispose();
                return Fail(ExitCodes.BadInput, $"--firmware-log {firmwareLogPath}: {e.Message}");
            }
            config = config with { FirmwareLog = firmwareLog };
        }

        var runner = new MachineRunner(config, log, serialOut, incoming);
        Terminal? terminal = null;
        var signals = new List<PosixSignalRegistration>();
        Csvmm.Control.QmpServer? qmp = null;
        try
        {
            if (options.QmpSocket is { } socketPath)
            {
                QmpAuthorizer? authorizer = management is { } m
                    ? new QmpAuthorizer(m.Gate, m.KernelPolicy ? null : m.ProcessContext, log)
                    : null;
                var machine = new QmpMachine(runner, config) { SnapshotWriteCheck = authorizer is null ? null : authorizer.CheckSnapshotWrite };
                try
                {
                    Func<int, string?>? peerContext = management is { KernelPolicy: true } ? fd => SelinuxHost.PeerContext(fd) : null;
                    qmp = new Csvmm.Control.QmpServer(socketPath, machine, authorizer, m => log.Information("{Qmp}", m), peerContext);
                }
                catch (Csvmm.Control.ControlException e)
                {
                    hostOut?.Dispose();
                    return Fail(ExitCodes.Usage, e.Message);
                }
                machine.Server = qmp;
                runner.Event += machine.OnMachineEvent;
                log.Information("QMP: listening on {Path}", socketPath);
            }
            foreach (var sig in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
            {
                signals.Add(PosixSignalRegistration.Create(sig, ctx =>
                {
                    ctx.Cancel = true;
                    int num = ctx.Signal switch { PosixSignal.SIGINT => 2, PosixSignal.SIGTERM => 15, PosixSignal.SIGHUP => 1, _ => 15 };
                    runner.RequestStop(new VmOutcome(VmExitKind.Signal, $"terminated by signal {num}", SignalNumber: num));
                }));
            }
            if (options.Serial.Mode == SerialMode.Stdio)
            {
                terminal = Terminal.TryEnterRaw();
                new StdinPump(
                    data => runner.SerialInput(data.Span),
                    () => runner.RequestStop(new VmOutcome(VmExitKind.UserQuit, "Ctrl-A x")),
                    text => { hostOut?.Flush(); Console.Error.Write(text); }).Start();
            }

            VmOutcome outcome = runner.Run();
            hostOut?.Flush();
            firmwareLog?.Flush();
            if (hostOut is { BytesDropped: > 0 } dropping)
                log.Warning("{Dropped} bytes of guest console output were dropped: the host side did not keep up or went away", dropping.BytesDropped);
            terminal?.Dispose();
            return Report(outcome, log);
        }
        catch (KvmException e) { return Fail(ExitCodes.Kvm, e.Message); }
        catch (BootException e) { return Fail(ExitCodes.BadInput, e.Message); }
        catch (Csvmm.Machine.Snapshot.SnapshotException e) { return Fail(ExitCodes.BadInput, e.Message); }
        catch (GuestMemoryException e) { return Fail(ExitCodes.Internal, e.Message); }
        catch (DeviceException e) { return Fail(ExitCodes.Internal, e.Message); }
        catch (Csvmm.Sys.SysException e) { return Fail(ExitCodes.Internal, e.Message); }
        catch (Exception e)
        {
            log.Debug(e, "internal error");
            return Fail(ExitCodes.Internal, $"internal error: {e.GetType().Name}: {e.Message}");
        }
        finally
        {
            qmp?.Dispose();
            terminal?.Dispose();
            foreach (var s in signals) s.Dispose();
            hostOut?.Dispose();
            firmwareLog?.Dispose();
        }
    }

    /// <summary>
    /// --seccomp: every vCPU, device I/O and console thread installs its filter when it starts (see SeccompProfiles).
    /// The filters are built once here first, so a missing libseccomp or an unknown system call is one line at start-up,
    /// not a thread failing later. Returns the problem, or null.
    /// </summary>
    private static string? ConfineThreads(CliOptions options)
    {
        var mode = options.Seccomp;
        if (mode == Csvmm.Sys.SeccompMode.Off) return null;
        try
        {
            foreach (var role in Enum.GetValues<Csvmm.Sys.ThreadRole>())
            {
                using var probe = new Csvmm.Sys.SeccompFilter(mode);
                foreach (string name in Csvmm.Machine.Hardening.SeccompProfiles.Syscalls(role)) probe.Allow(name);
                probe.AllowIoctl(Csvmm.Machine.Hardening.SeccompProfiles.Ioctls(role));
            }
        }
        catch (Csvmm.Sys.SysException e)
        {
            return e.Message;
        }
        var selfTest = options.SeccompSelfTest;
        Csvmm.Sys.ThreadConfinement.Install(role =>
        {
            try
            {
                Csvmm.Machine.Hardening.SeccompProfiles.Apply(role, mode, selfTest);
            }
            catch (Csvmm.Sys.SysException e)
            {
                // A thread that cannot be confined must not run unconfined: stop csvmm with one line.
                Console.Error.WriteLine($"csvmm: {role} thread: {e.Message}");
                Environment.Exit(ExitCodes.Internal);
            }
        });
        return null;
    }

    /// <summary>SO_PEERCRED of a connected unix socket (pid, uid), or (0, 0) for another kind of socket.</summary>
    private static unsafe (int Pid, int Uid) PeerCredentials(System.Net.Sockets.Socket socket)
    {
        if (socket.AddressFamily != System.Net.Sockets.AddressFamily.Unix) return (0, 0);
        Span<int> cred = stackalloc int[3];
        int length = 12;
        fixed (int* p = cred)
            if (Tmds.Linux.LibC.getsockopt((int)socket.Handle, 1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, p, (Tmds.Linux.socklen_t*)&length) != 0) return (0, 0);
        return (cred[0], cred[1]);
    }

    private static int Report(VmOutcome outcome, Serilog.ILogger log)
    {
        switch (outcome.Kind)
        {
            case VmExitKind.PowerOff:
            case VmExitKind.Reset:
            case VmExitKind.UserQuit:
                log.Information("guest ended: {Reason}", outcome.Reason);
                return ExitCodes.Ok;
            case VmExitKind.Crashed:
                Console.Error.Write(outcome.Report ?? $"csvmm: guest crashed: {outcome.Reason}\n");
                return ExitCodes.GuestCrashed;
            case VmExitKind.KvmError:
                return Fail(ExitCodes.Kvm, outcome.Reason);
            case VmExitKind.Timeout:
                return Fail(ExitCodes.Timeout, $"stopped the guest: {outcome.Reason}");
            case VmExitKind.Signal:
                Console.Error.WriteLine($"csvmm: {outcome.Reason}");
                return ExitCodes.SignalBase + outcome.SignalNumber;
            default:
                return Fail(ExitCodes.Internal, outcome.Reason);
        }
    }

    private static Serilog.Core.Logger CreateLogger(CliOptions options)
    {
        var cfg = new LoggerConfiguration()
            .MinimumLevel.Is(options.LogLevel)
            .WriteTo.Console(outputTemplate: "csvmm: [{Level:u3}] {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: LogEventLevel.Verbose);
        if (options.LogFile is { } f)
            cfg = cfg.WriteTo.File(new CompactJsonFormatter(), f);
        return cfg.CreateLogger();
    }
}

/// <summary>Pre-flight check of an input file: exists, is a regular file, is readable.</summary>
public static class InputFile
{
    /// <summary>Returns a one-line problem description, or null when the file can be read.</summary>
    public static string? Check(string path, string role)
    {
        try
        {
            if (Directory.Exists(path)) return $"{role} '{path}' is a directory, not a file";
            using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            if (s.Length == 0) return $"{role} '{path}' is empty";
            return null;
        }
        catch (FileNotFoundException) { return $"cannot open {role} '{path}': No such file or directory"; }
        catch (DirectoryNotFoundException) { return $"cannot open {role} '{path}': No such file or directory"; }
        catch (UnauthorizedAccessException) { return $"cannot open {role} '{path}': Permission denied"; }
        catch (IOException e) { return $"cannot read {role} '{path}': {e.Message}"; }
    }
}
