using System.CommandLine;
using System.Runtime.InteropServices;
using Csvmm.Boot;
using Csvmm.Devices;
using Csvmm.Kvm;
using Csvmm.Machine;
using Csvmm.Memory;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

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

        // Input files are checked up front so a missing or unreadable one is one clear line, before KVM is touched.
        foreach (var (role, path) in new[] { ("kernel", config.Kernel), ("initrd", config.Initrd), ("firmware", config.Firmware) })
            if (path is not null && InputFile.Check(path, role) is { } problem)
                return Fail(ExitCodes.BadInput, problem);

        // The SELinux entrypoint gate decides on every disk before any is opened for reading or writing: each path
        // is opened O_PATH only, labelled and checked; a denial in enforcing mode stops csvmm here (exit code 6).
        GateOutcome gate;
        try
        {
            gate = SecurityGate.Evaluate(options.Security, config.Disks.Select(d => d.Path).ToList(), log);
        }
        catch (Csvmm.Block.DiskException e)
        {
            return Fail(ExitCodes.BadInput, e.Message);
        }

        // Allowed disks are opened (and locked, as QEMU does) through the checked descriptors, before anything else
        // runs; they stay open, holding their locks, for the life of the process.
        var disks = new List<Csvmm.Block.RawDisk>();
        using (gate)
        {
            if (gate.Refusal is { } refusal)
                return Fail(ExitCodes.Denied, refusal);
            // --selinux-transition: re-exec in the VM's SELinux domain now, before any disk is opened for I/O or guest RAM exists.
            if (SecurityGate.Transition(options.Security, gate, log) is { } transition)
                return Fail(transition.ExitCode, transition.Message);
            try
            {
                for (int i = 0; i < config.Disks.Count; i++)
                {
                    var d = config.Disks[i];
                    disks.Add(Csvmm.Block.DiskOpener.Open(new Csvmm.Block.DiskOpenOptions(gate.OpenPath(i), d.ReadOnly,
                        d.Cache == DiskCache.None ? Csvmm.Block.DiskCacheMode.None : Csvmm.Block.DiskCacheMode.Writeback)
                    { Warn = m => log.Warning("{Warning}", m), DisplayName = gate.DisplayName(i) }));
                }
            }
            catch (Csvmm.Block.DiskException e)
            {
                foreach (var d in disks) d.Dispose();
                return Fail(ExitCodes.BadInput, e.Message);
            }
        }
        var attached = new List<AttachedDisk>(disks.Count);
        for (int i = 0; i < disks.Count; i++)
            attached.Add(new AttachedDisk(config.Disks[i].Interface, disks[i], config.Disks[i].Path));
        config = config with { AttachedDisks = attached };

        try
        {
            return RunMachine(options, log, config);
        }
        finally
        {
            foreach (var d in disks) d.Dispose();
        }
    }

    private static int RunMachine(CliOptions options, Serilog.Core.Logger log, MachineConfig config)
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

        var runner = new MachineRunner(config, log, serialOut);
        Terminal? terminal = null;
        var signals = new List<PosixSignalRegistration>();
        try
        {
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
            terminal?.Dispose();
            return Report(outcome, log);
        }
        catch (KvmException e) { return Fail(ExitCodes.Kvm, e.Message); }
        catch (BootException e) { return Fail(ExitCodes.BadInput, e.Message); }
        catch (GuestMemoryException e) { return Fail(ExitCodes.Internal, e.Message); }
        catch (DeviceException e) { return Fail(ExitCodes.Internal, e.Message); }
        catch (Exception e)
        {
            log.Debug(e, "internal error");
            return Fail(ExitCodes.Internal, $"internal error: {e.GetType().Name}: {e.Message}");
        }
        finally
        {
            terminal?.Dispose();
            foreach (var s in signals) s.Dispose();
            hostOut?.Dispose();
        }
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
