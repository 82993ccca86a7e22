using Csvmm.Cli;
using Csvmm.Machine;

namespace Csvmm.Cli.Tests;

public class ParsingTests
{
    private static (CliOptions? Options, string? Error) Parse(params string[] args)
    {
        var cli = new CommandLine();
        return cli.ToOptions(cli.Root.Parse(args));
    }

    [Fact]
    public void FullCommandLineParses()
    {
        var (o, err) = Parse("--kernel", "/k", "--initrd", "/i", "--append", "console=ttyS0 quiet", "--memory", "2G", "--cpus", "2",
            "--disk", "/a.img", "--disk", "/b.img,if=ide,readonly=on,cache=none", "--serial", "file:/tmp/s.log", "--no-reboot",
            "--log-level", "debug", "--log-file", "/tmp/l.json", "--timeout", "30");
        Assert.Null(err);
        var m = o!.Machine;
        Assert.Equal("/k", m.Kernel);
        Assert.Equal("/i", m.Initrd);
        Assert.Equal("console=ttyS0 quiet", m.Append);
        Assert.Equal(2UL << 30, m.MemoryBytes);
        Assert.Equal(2, m.Cpus);
        Assert.True(m.NoReboot);
        Assert.Equal(TimeSpan.FromSeconds(30), m.Timeout);
        Assert.Equal(2, m.Disks.Count);
        Assert.Equal(new DiskSpec("/a.img", DiskInterface.Virtio, false, DiskCache.Writeback), m.Disks[0]);
        Assert.Equal(new DiskSpec("/b.img", DiskInterface.Ide, true, DiskCache.None), m.Disks[1]);
        Assert.Equal(SerialMode.File, o.Serial.Mode);
        Assert.Equal("/tmp/s.log", o.Serial.Path);
        Assert.Equal(Serilog.Events.LogEventLevel.Debug, o.LogLevel);
        Assert.Equal("/tmp/l.json", o.LogFile);
        Assert.Null(o.FirmwareLog);
    }

    [Fact]
    public void FirmwareLogIsAFullPath()
    {
        var (o, err) = Parse("--disk", "/d.img", "--firmware-log", "fw.log");
        Assert.Null(err);
        Assert.Equal(Path.GetFullPath("fw.log"), o!.FirmwareLog);
    }

    [Fact]
    public void DiskAloneBootsThroughTheBuiltInFirmware()
    {
        var (o, err) = Parse("--disk", "/d.img,if=ide");
        Assert.Null(err);
        Assert.True(o!.BuiltInFirmware);
        Assert.Equal(BuiltInFirmware.Path, o.Machine.Firmware);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "firmware", "bios.bin"), o.Machine.Firmware);
        Assert.Null(o.Machine.Kernel);

        var (explicitFw, _) = Parse("--disk", "/d.img", "--firmware", "/fw.bin");
        Assert.False(explicitFw!.BuiltInFirmware);
        Assert.Equal("/fw.bin", explicitFw.Machine.Firmware);
        var (kernel, _) = Parse("--disk", "/d.img", "--kernel", "/k");
        Assert.False(kernel!.BuiltInFirmware);
        Assert.Null(kernel.Machine.Firmware);
    }

    [Theory]
    [InlineData("unix:/tmp/q.sock", "/tmp/q.sock")]
    [InlineData("unix:/tmp/q.sock,server", "/tmp/q.sock")]
    [InlineData("unix:/tmp/q.sock,server=on,wait=off", "/tmp/q.sock")]
    [InlineData("unix:/tmp/q.sock,server,nowait", "/tmp/q.sock")]
    public void QmpSocketParsesQemuStyle(string spec, string path)
    {
        var (o, err) = Parse("--firmware", "/fw", "--qmp", spec);
        Assert.Null(err);
        Assert.Equal(path, o!.QmpSocket);
    }

    [Theory]
    [InlineData("tcp:127.0.0.1:4444", "expected unix:PATH")]
    [InlineData("unix:", "path is empty")]
    [InlineData("unix:/tmp/q.sock,server=off", "server=off")]
    [InlineData("unix:/tmp/q.sock,wait=on", "wait=on")]
    [InlineData("unix:/tmp/q.sock,telnet", "unknown option 'telnet'")]
    public void BadQmpSpecsAreUsageErrors(string spec, string fragment)
    {
        var (o, err) = Parse("--firmware", "/fw", "--qmp", spec);
        Assert.Null(o);
        Assert.Contains(fragment, err);
    }

    [Fact]
    public void A_nul_in_a_qmp_socket_path_is_an_error_not_an_exception()
    {
        // Found by the cli-specs fuzz target (Path.GetFullPath threw).
        Assert.False(QmpSpecParser.TryParse("unix:/tmp/a\0b", out _, out string error));
        Assert.Contains("NUL", error);
    }

    [Theory]
    [InlineData("file:/tmp/a\0b.snap", "NUL")]
    [InlineData("file:", "not supported")]
    [InlineData("tcp:127.0.0.1:4444", "not supported")]
    public void A_migrate_uri_that_names_no_file_is_refused_with_a_reason(string uri, string fragment)
    {
        // A QMP client's string: the NUL case is reachable through JSON's \u0000 and used to throw.
        Assert.Contains(fragment, QmpMachine.MigrationPath(uri, out string path));
        Assert.Equal("", path);
        Assert.Null(QmpMachine.MigrationPath("file:/tmp/x.snap", out path));
        Assert.Equal("/tmp/x.snap", path);
    }

    [Theory]
    [InlineData("migrate", "file:/tmp/vm.snap", Csvmm.Security.VmOperation.Save)]
    [InlineData("migrate", "unix:/tmp/m.sock", Csvmm.Security.VmOperation.MigrateOut)]
    [InlineData("migrate", "tcp:127.0.0.1:4444", Csvmm.Security.VmOperation.MigrateOut)]
    [InlineData("migrate", null, Csvmm.Security.VmOperation.MigrateOut)]
    [InlineData("migrate_cancel", null, Csvmm.Security.VmOperation.Control)]
    [InlineData("query-migrate", null, Csvmm.Security.VmOperation.Query)]
    public void Each_QMP_command_is_the_management_operation_MAC_decides(string command, string? target, Csvmm.Security.VmOperation operation) =>
        Assert.Equal(operation, QmpAuthorizer.OperationFor(command, target));

    [Theory]
    [InlineData("unix:/tmp/m.sock", "/tmp/m.sock", null)]
    [InlineData("tcp:127.0.0.1:4444", null, "127.0.0.1:4444")]
    public void IncomingWaitsForAMigrationAtASocket(string uri, string? unix, string? tcp)
    {
        var (o, err) = Parse("--incoming", uri);
        Assert.Null(err);
        Assert.Null(o!.Incoming);
        Assert.Equal(unix, o.IncomingStream!.UnixPath);
        Assert.Equal(tcp, o.IncomingStream.Tcp?.ToString());
        Assert.False(o.BuiltInFirmware);
    }

    [Fact]
    public void IncomingTakesTheMachineFromTheSnapshot()
    {
        var (o, err) = Parse("--incoming", "file:/tmp/vm.snap", "--qmp", "unix:/tmp/q.sock");
        Assert.Null(err);
        Assert.Equal("/tmp/vm.snap", o!.Incoming);
        Assert.False(o.BuiltInFirmware);
        Assert.Contains("expected file:PATH, unix:PATH or tcp:HOST:PORT", Parse("--incoming", "exec:cat")!.Error);
        Assert.Contains("expected file:PATH", Parse("--incoming", "tcp:1.2.3.4")!.Error);
        Assert.Contains("expected file:PATH", Parse("--incoming", "file:")!.Error);
        Assert.Contains("cannot be given", Parse("--incoming", "unix:/tmp/m.sock", "--disk", "/d.img")!.Error);
        Assert.Contains("cannot be given", Parse("--incoming", "file:/a", "--firmware", "/fw")!.Error);
        Assert.Contains("cannot be given", Parse("--incoming", "file:/a", "--disk", "/d.img")!.Error);
        Assert.Contains("--memory and --cpus", Parse("--incoming", "file:/a", "--memory", "1G")!.Error);
        Assert.Contains("--memory and --cpus", Parse("--incoming", "file:/a", "--cpus", "2")!.Error);
    }

    [Fact]
    public void DefaultsAreOneCpu512MStdio()
    {
        var (o, err) = Parse("--firmware", "/fw.bin");
        Assert.Null(err);
        Assert.Equal(512UL << 20, o!.Machine.MemoryBytes);
        Assert.Equal(1, o.Machine.Cpus);
        Assert.Equal(SerialMode.Stdio, o.Serial.Mode);
        Assert.False(o.Machine.NoReboot);
        Assert.Null(o.Machine.Timeout);
    }

    [Theory]
    [InlineData("0", "at least 1M")]
    [InlineData("10T", "larger than this host")]
    [InlineData("abc", "not a size")]
    [InlineData("12Q", "not a size")]
    [InlineData("-5", "not a size")]
    [InlineData("1025K", "multiple of 4K")]
    public void BadMemoryIsAUsageError(string value, string fragment)
    {
        var (o, err) = Parse("--firmware", "/fw", "--memory", value);
        Assert.Null(o);
        Assert.Contains(fragment, err);
        Assert.DoesNotContain("\n", err);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("5000")]
    [InlineData("-1")]
    public void BadCpusIsAUsageError(string value)
    {
        var (o, err) = Parse("--firmware", "/fw", "--cpus", value);
        Assert.Null(o);
        Assert.Contains("--cpus", err);
    }

    [Fact]
    public void NonNumericCpusIsAUsageError()
    {
        var (o, err) = Parse("--firmware", "/fw", "--cpus", "two");
        Assert.Null(o);
        Assert.NotNull(err);
    }

    [Theory]
    [InlineData(new[] { "--kernel", "/k", "--firmware", "/f" }, "cannot be used together")]
    [InlineData(new[] { "--initrd", "/i", "--firmware", "/f" }, "need --kernel")]
    [InlineData(new string[0], "nothing to boot")]
    [InlineData(new[] { "--firmware", "/f", "--serial", "tcp:1234" }, "--serial")]
    [InlineData(new[] { "--firmware", "/f", "--log-level", "loud" }, "--log-level")]
    [InlineData(new[] { "--firmware", "/f", "--timeout", "0" }, "--timeout")]
    [InlineData(new[] { "--firmware", "/f", "--disk", "/d,if=scsi" }, "if=scsi")]
    [InlineData(new[] { "--firmware", "/f", "--disk", "/d,readonly=maybe" }, "readonly=maybe")]
    [InlineData(new[] { "--firmware", "/f", "--disk", "/d,bogus=1" }, "unknown option 'bogus'")]
    [InlineData(new[] { "--firmware", "/f", "--disk", "/d,if=ide,if=virtio" }, "given twice")]
    [InlineData(new[] { "--firmware", "/f", "--disk", ",if=ide" }, "missing path")]
    [InlineData(new[] { "--firmware", "/f", "--frobnicate" }, "--frobnicate")]
    public void InvalidCombinationsAreUsageErrors(string[] args, string fragment)
    {
        var (o, err) = Parse(args);
        Assert.Null(o);
        Assert.Contains(fragment, err);
    }

    [Theory]
    [InlineData("512M", 512UL << 20)]
    [InlineData("512", 512UL << 20)]
    [InlineData("2G", 2UL << 30)]
    [InlineData("2GiB", 2UL << 30)]
    [InlineData("1.5G", 3UL << 29)]
    [InlineData("65536K", 64UL << 20)]
    [InlineData("1T", 1UL << 40)]
    public void SizesParseLikeQemu(string text, ulong bytes)
    {
        Assert.True(SizeParser.TryParse(text, out ulong got, out _));
        Assert.Equal(bytes, got);
    }

    [Fact]
    public void DiskPathMayContainDoubledCommas()
    {
        Assert.True(DiskSpecParser.TryParse("/img/a,,b.raw,if=ide", out var spec, out _));
        Assert.Equal("/img/a,b.raw", spec!.Path);
        Assert.Equal(DiskInterface.Ide, spec.Interface);
    }
}

public class StdinPumpTests
{
    private sealed class Sink
    {
        public readonly List<byte> Delivered = [];
        public int Quit;
        public string Said = "";
    }

    private static (StdinPump Pump, Sink Sink) Make(int capacityPerCall = int.MaxValue)
    {
        var sink = new Sink();
        var pump = new StdinPump(d =>
        {
            int n = Math.Min(d.Length, capacityPerCall);
            sink.Delivered.AddRange(d.Span[..n].ToArray());
            return n;
        }, () => sink.Quit++, s => sink.Said += s);
        return (pump, sink);
    }

    [Fact]
    public void PlainBytesReachTheGuest()
    {
        var (pump, sink) = Make();
        pump.Process("ls\r"u8);
        Assert.Equal("ls\r"u8.ToArray(), sink.Delivered);
        Assert.Equal(0, sink.Quit);
    }

    [Fact]
    public void CtrlAXQuitsAfterDeliveringWhatCameBefore()
    {
        var (pump, sink) = Make();
        pump.Process([(byte)'a', 0x01, (byte)'x', (byte)'b']);
        Assert.Equal([(byte)'a'], sink.Delivered);
        Assert.Equal(1, sink.Quit);
    }

    [Fact]
    public void CtrlACtrlASendsOneCtrlAAndEscapeSpansReads()
    {
        var (pump, sink) = Make();
        pump.Process([0x01]);
        pump.Process([0x01, (byte)'z']);
        Assert.Equal([0x01, (byte)'z'], sink.Delivered);
        pump.Process([0x01]);
        pump.Process([(byte)'h']);
        Assert.Contains("C-a x", sink.Said);
        Assert.Equal(0, sink.Quit);
    }

    [Fact]
    public void BackpressureRetriesUntilEverythingIsAccepted()
    {
        var (pump, sink) = Make(capacityPerCall: 3);
        pump.Process("0123456789"u8);
        Assert.Equal("0123456789"u8.ToArray(), sink.Delivered);
    }
}

/// <summary>
/// COM1's host output: whole lines at once, partial lines (prompts) after a short delay, written by the console thread,
/// so the guest's side never waits for the host's reader.
/// </summary>
public sealed class HostSerialOutputTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"csvmm-serial-{Guid.NewGuid():N}.txt");

    public void Dispose() => File.Delete(_path);

    private string Contents()
    {
        using var s = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(s).ReadToEnd();
    }

    private static void Write(HostSerialOutput output, string text)
    {
        foreach (char c in text) output.Write((byte)c);
    }

    private string WaitFor(Func<string, bool> done)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        string text;
        while (!done(text = Contents()) && DateTime.UtcNow < deadline) Thread.Sleep(2);
        return text;
    }

    [Fact]
    public void LinesAreWrittenAtTheNewlineAndPromptsAfterTheLinger()
    {
        using var output = HostSerialOutput.ToFile(_path);
        Write(output, "line one\n");
        Assert.Equal("line one\n", WaitFor(t => t.Length >= 9));
        Write(output, "login: ");
        Assert.Equal("line one\nlogin: ", WaitFor(t => t.EndsWith(' ')));  // the partial line came out without a newline
        Write(output, "x");                                                  // and the next partial line too
        Assert.Equal("line one\nlogin: x", WaitFor(t => t.EndsWith('x')));
        Assert.Equal(17, output.BytesWritten);
        Assert.Equal(0, output.BytesDropped);
    }

    [Fact]
    public void FlushWritesEverythingWrittenBeforeIt()
    {
        using var output = HostSerialOutput.ToFile(_path);
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < 5000; i++) text.Append($"line {i}\n");
        text.Append("prompt> ");
        Write(output, text.ToString());
        output.Flush();
        Assert.Equal(text.ToString(), Contents()); // no waiting: Flush returned only once it was all out
    }

    [Fact]
    public unsafe void A_stalled_reader_never_blocks_the_guest_side()
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, Tmds.Linux.LibC.pipe2(fds, Tmds.Linux.LibC.O_CLOEXEC));
        using var readEnd = new Microsoft.Win32.SafeHandles.SafeFileHandle(fds[0], ownsHandle: true);
        var output = new HostSerialOutput(new Microsoft.Win32.SafeHandles.SafeFileHandle(fds[1], ownsHandle: true), TimeSpan.FromMilliseconds(200));
        // Nobody reads the pipe (64 KiB): 3 MiB of guest output must still be accepted at once, the excess dropped and counted.
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 3 << 20; i++) output.Write((byte)(i % 64 == 63 ? '\n' : 'a'));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"the writes took {started.Elapsed}");
        Assert.Equal(3L << 20, output.BytesWritten);
        Assert.True(output.BytesDropped >= (2L << 20) - (128 << 10), $"dropped {output.BytesDropped}");
        output.Flush();   // bounded by the 200 ms limit, not stuck on the pipe
        output.Dispose(); // likewise
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(15), $"flush and dispose took {started.Elapsed}");
    }
}
