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
            using var qmp = new QmpTestClient(sock, TimeSpan.FromSeconds(30));
            JsonElement Execute(string cmd) => qmp.Execute(cmd);
            void WaitEvent(string name) => qmp.WaitEvent(name);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString() != "running")
            {
                Assert.True(DateTime.UtcNow < deadline, "the VM never ran");
                Thread.Sleep(50);
            }
            Assert.Equal(JsonValueKind.Object, Execute("""{"execute":"stop"}""").GetProperty("return").ValueKind);
            WaitEvent("STOP");
            Assert.Equal("paused", Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
            var cpus = Execute("""{"execute":"query-cpus-fast"}""").GetProperty("return");
            Assert.Equal(2, cpus.GetArrayLength());
            Assert.All(cpus.EnumerateArray().ToArray(), c => Assert.True(Directory.Exists($"/proc/{p.Id}/task/{c.GetProperty("thread-id").GetInt64()}")));
            Assert.Equal(JsonValueKind.Object, Execute("""{"execute":"cont"}""").GetProperty("return").ValueKind);
            WaitEvent("RESUME");
            Assert.Equal(JsonValueKind.Object, Execute("""{"execute":"system_powerdown"}""").GetProperty("return").ValueKind);
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
