using System.Diagnostics;
using System.Text.Json;
using Csvmm.TestSupport;
using Csvmm.TinyGuests;

namespace Csvmm.Cli.Tests;

/// <summary>
/// Live migration between two csvmm processes (needs /dev/kvm): the destination waits with --incoming unix:PATH, the
/// source runs a guest that rewrites and checks 1 MiB of its RAM all the time and is sent over by QMP migrate; the
/// destination's guest must count on from where the source's stopped and find every page as it left it.
/// </summary>
public sealed class MigrationBinaryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-migbin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(RepoPaths.Csvmm) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static string Text(string path)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return new StreamReader(f).ReadToEnd();
        }
        catch (FileNotFoundException) { return ""; }
    }

    private static void WaitFor(Func<bool> condition, TimeSpan limit, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < limit, what);
            Thread.Sleep(20);
        }
    }

    [Fact]
    public async Task A_running_guest_moves_to_a_csvmm_waiting_with_incoming_and_counts_on_there()
    {
        HostRequirements.RequireKvm("this test migrates a running guest between two csvmm processes");
        string firmware = Path.Combine(_dir, "writer.fd"), migration = Path.Combine(_dir, "mig.sock"), qmpPath = Path.Combine(_dir, "qmp.sock");
        string sourceSerial = Path.Combine(_dir, "source.txt"), destinationSerial = Path.Combine(_dir, "destination.txt");
        File.WriteAllBytes(firmware, CountingGuests.RamWriter(256));

        using var destination = Start("--incoming", $"unix:{migration}", "--serial", $"file:{destinationSerial}", "--timeout", "120");
        var destinationErr = destination.StandardError.ReadToEndAsync();
        using var source = Start("--firmware", firmware, "--memory", "32M", "--serial", $"file:{sourceSerial}",
            "--qmp", $"unix:{qmpPath}", "--timeout", "120");
        var sourceErr = source.StandardError.ReadToEndAsync();
        try
        {
            WaitFor(() => File.Exists(migration), TimeSpan.FromSeconds(30), "the destination never listened");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(migration));
            WaitFor(() => CountingGuests.Numbers(Text(sourceSerial)).Count >= 3, TimeSpan.FromSeconds(60), "the source guest did not count");

            using var qmp = new QmpTestClient(qmpPath, TimeSpan.FromSeconds(30));
            Assert.Equal(JsonValueKind.Object, qmp.Return("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:" + migration + "\"}}").ValueKind);
            qmp.WaitEvent("MIGRATION", d => d.GetProperty("status").GetString() is "completed" or "failed" or "cancelled");
            var info = qmp.Return("""{"execute":"query-migrate"}""");
            Assert.True(info.GetProperty("status").GetString() == "completed", $"query-migrate: {info}");
            var statuses = qmp.Events.Where(e => e.Name == "MIGRATION").Select(e => e.Data.GetProperty("status").GetString()).ToList();
            Assert.Equal(["setup", "active", "device", "completed"], statuses);
            Assert.Contains(qmp.Events, e => e.Name == "STOP");
            Assert.Equal("postmigrate", qmp.Status);
            var ram = info.GetProperty("ram");
            Assert.True(ram.GetProperty("transferred").GetInt64() >= 1 << 20);
            Assert.True(ram.GetProperty("transferred").GetInt64() < 32 << 20, "zero pages were sent");
            Assert.True(ram.GetProperty("duplicate").GetInt64() > 0);
            Assert.True(ram.GetProperty("dirty-sync-count").GetInt64() >= 2);
            long downtime = info.GetProperty("downtime").GetInt64(), total = info.GetProperty("total-time").GetInt64();
            Assert.InRange(downtime, 0, total);

            string fromSource = Text(sourceSerial);
            WaitFor(() => CountingGuests.Numbers(Text(destinationSerial)).Count >= 5 || Text(destinationSerial).Contains("BAD"),
                TimeSpan.FromSeconds(60), $"the destination did not count on: \"{Text(destinationSerial)}\"");
            string fromDestination = Text(destinationSerial);
            Assert.DoesNotContain("BAD", fromDestination);
            var all = CountingGuests.Numbers(fromSource + fromDestination);
            Assert.Equal(Enumerable.Range(0, all.Count).Select(i => all[0] + (uint)i), all);
            Assert.Equal(fromSource, Text(sourceSerial)); // the source stays stopped

            qmp.Return("""{"execute":"quit"}""");
            Assert.True(source.WaitForExit(30_000), "the source did not quit");
            Assert.Equal(0, source.ExitCode);
        }
        finally
        {
            if (!source.HasExited) source.Kill(entireProcessTree: true);
            if (!destination.HasExited) destination.Kill(entireProcessTree: true);
        }
        Assert.DoesNotContain("Exception", await sourceErr);
        Assert.DoesNotContain("Exception", await destinationErr);
    }

    [Fact]
    public async Task A_destination_fed_garbage_refuses_it_with_one_line_and_exit_3()
    {
        HostRequirements.RequireKvm("the destination builds a machine");
        string migration = Path.Combine(_dir, "junk.sock");
        using var destination = Start("--incoming", $"unix:{migration}", "--serial", "none");
        var stderr = destination.StandardError.ReadToEndAsync();
        WaitFor(() => File.Exists(migration), TimeSpan.FromSeconds(30), "the destination never listened");
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            s.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(migration));
            s.Send(System.Text.Encoding.ASCII.GetBytes("GET / HTTP/1.0\r\n\r\n"));
            s.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        }
        Assert.True(destination.WaitForExit(30_000), "the destination did not give up");
        Assert.Equal(3, destination.ExitCode);
        BinaryTests.AssertOneLineError(await stderr, "not a usable csvmm migration stream");
    }
}
