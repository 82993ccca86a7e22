using System.Diagnostics;
using Csvmm.Control;

namespace Csvmm.Control.Tests;

/// <summary>
/// csvmm's QMP server driven by a client the project did not write: DigitalOcean's go-qemu qmp package (Debian's
/// golang-github-digitalocean-go-qemu-dev), through tests/qmp-client. It must connect (greeting, negotiation), run
/// commands, see QMP errors as errors, and receive events.
/// </summary>
public sealed class GoQemuClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-goqmp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "csvmm.slnx"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    private static (int Code, string Out, string Err) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); Assert.Fail($"{exe} did not finish"); }
        p.WaitForExit();
        return (p.ExitCode, o.Result, e.Result);
    }

    private sealed class EventfulMachine(FakeMachine inner) : IQmpMachine
    {
        public QmpServer? Server;
        public string Status => inner.Status;
        public bool Pause() { bool ok = inner.Pause(); Server?.Event("STOP"); return ok; }
        public void Resume() { inner.Resume(); Server?.Event("RESUME"); }
        public void Reset() => inner.Reset();
        public void PowerButton() { inner.PowerButton(); Server?.Event("POWERDOWN"); }
        public void Quit() => inner.Quit();
        public IReadOnlyList<QmpCpu> Cpus => inner.Cpus;
        public IReadOnlyList<QmpBlock> Block => inner.Block;
        public IReadOnlyList<KeyValuePair<string, long>> Stats() => inner.Stats();
        public string? Migrate(string uri) => inner.Migrate(uri);
        public QmpMigration? Migration => inner.Migration;
    }

    [Fact]
    public void Go_qemu_connects_runs_commands_sees_errors_and_events()
    {
        var (code, built, err) = Run("bash", Path.Combine(RepoRoot(), "tests", "qmp-client", "build.sh"));
        Assert.True(code == 0, $"tests/qmp-client/build.sh failed ({code}): {err}");
        string client = built.Trim().Split('\n').Last();

        var fake = new FakeMachine();
        var machine = new EventfulMachine(fake);
        string sock = Path.Combine(_dir, "qmp.sock");
        using var server = new QmpServer(sock, machine);
        machine.Server = server;

        var (rc, output, stderr) = Run(client, sock,
            """{"execute":"query-status"}""", """{"execute":"stop"}""", """{"execute":"query-status"}""",
            """{"execute":"no-such-command"}""", """{"execute":"query-cpus-fast"}""", """{"execute":"cont"}""",
            """{"execute":"system_powerdown"}""");
        Assert.True(rc == 0, $"qmp-client exit {rc}:\n{output}\n{stderr}");
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal($"VERSION {QmpSession.Version.Major}.{QmpSession.Version.Minor}.{QmpSession.Version.Micro} csvmm", lines[0]);
        Assert.StartsWith("OK ", lines[1]);
        Assert.Contains("\"status\":\"running\"", lines[1]);
        Assert.StartsWith("OK ", lines[2]);
        Assert.Contains("\"status\":\"paused\"", lines[3]);
        Assert.StartsWith("ERR ", lines[4]);
        Assert.Contains("no-such-command has not been found", lines[4]);
        Assert.Contains("\"thread-id\":1235", lines[5]);
        Assert.StartsWith("OK ", lines[6]);
        Assert.StartsWith("OK ", lines[7]);
        Assert.Equal(["EVENT STOP", "EVENT RESUME", "EVENT POWERDOWN"], lines.Where(l => l.StartsWith("EVENT ")).ToArray());
        Assert.Equal(["pause", "resume", "powerbutton"], fake.Calls);
    }
}
