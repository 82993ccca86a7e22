using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Csvmm.TestSupport;

namespace Csvmm.Cli.Tests;

/// <summary>
/// The binary under QMP control (needs /dev/kvm): SeaBIOS with 2 vCPUs runs while a client stops and continues it,
/// asks for its vCPUs, presses its power button and quits it, reading QEMU's events for each.
/// </summary>
public sealed class QmpBinaryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-qmpbin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task StopContQueryPowerdownQuitDriveTheRunningVm()
    {
        HostRequirements.RequireKvm("this test runs a VM under QMP control");
        string sock = Path.Combine(_dir, "qmp.sock");
        var psi = new ProcessStartInfo(RepoPaths.Csvmm) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "--firmware", "/usr/share/seabios/bios-256k.bin", "--memory", "64M", "--cpus", "2",
                     "--serial", "none", "--qmp", $"unix:{sock},server=on,wait=off", "--timeout", "120" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(sock) && !Directory.GetFileSystemEntries(_dir).Any() && DateTime.UtcNow < deadline) Thread.Sleep(20);
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(sock));
            s.ReceiveTimeout = 30_000;
            using var reader = new StreamReader(new NetworkStream(s), Encoding.UTF8);
            JsonElement Read() => JsonDocument.Parse(reader.ReadLine() ?? throw new Xunit.Sdk.XunitException("QMP closed")).RootElement.Clone();
            JsonElement Execute(string cmd)
            {
                s.Send(Encoding.UTF8.GetBytes(cmd));
                while (true)
                {
                    var m = Read();
                    if (!m.TryGetProperty("event", out _)) return m;
                }
            }
            JsonElement WaitEvent(string name)
            {
                while (true)
                {
                    var m = Read();
                    if (m.TryGetProperty("event", out var e) && e.GetString() == name) return m;
                }
            }

            Assert.True(Read().TryGetProperty("QMP", out _));
            Execute("""{"execute":"qmp_capabilities"}""");
            deadline = DateTime.UtcNow.AddSeconds(30);
            while (Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString() != "running")
            {
                Assert.True(DateTime.UtcNow < deadline, "the VM never ran");
                Thread.Sleep(50);
            }
            s.Send("""{"execute":"stop"}"""u8.ToArray());
            WaitEvent("STOP");
            Assert.Equal("paused", Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
            var cpus = Execute("""{"execute":"query-cpus-fast"}""").GetProperty("return");
            Assert.Equal(2, cpus.GetArrayLength());
            Assert.All(cpus.EnumerateArray().ToArray(), c => Assert.True(Directory.Exists($"/proc/{p.Id}/task/{c.GetProperty("thread-id").GetInt64()}")));
            s.Send("""{"execute":"cont"}"""u8.ToArray());
            WaitEvent("RESUME");
            s.Send("""{"execute":"system_powerdown"}"""u8.ToArray());
            WaitEvent("POWERDOWN");
            Assert.Equal(JsonValueKind.Object, Execute("""{"execute":"quit"}""").GetProperty("return").ValueKind);
            Assert.True(p.WaitForExit(30_000), "csvmm did not exit after quit");
            Assert.Equal(0, p.ExitCode);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
        Assert.DoesNotContain("Exception", await stderr);
    }
}
