using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Csvmm.Control;

namespace Csvmm.Control.Tests;

/// <summary>The QMP server on a real Unix socket: file mode, stale sockets, peer credentials, one client at a time.</summary>
public sealed class QmpServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-qmp-").FullName;
    private readonly FakeMachine _machine = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class Client : IDisposable
    {
        private readonly Socket _s = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly StreamReader _reader;

        public Client(string path)
        {
            _s.Connect(new UnixDomainSocketEndPoint(path));
            _s.ReceiveTimeout = 10_000;
            _reader = new StreamReader(new NetworkStream(_s), Encoding.UTF8);
        }

        public JsonElement Read()
        {
            string? line = _reader.ReadLine();
            Assert.NotNull(line);
            return JsonDocument.Parse(line).RootElement.Clone();
        }

        public JsonElement Execute(string json)
        {
            _s.Send(Encoding.UTF8.GetBytes(json));
            return Read();
        }

        public void Dispose() => _s.Dispose();
    }

    private sealed class RecordingAuthorizer : IQmpAuthorizer
    {
        public QmpPeer? Peer;
        public string? Check(QmpPeer peer, string command, string? target) { Peer = peer; return null; }
    }

    [Fact]
    public void Socket_is_0600_speaks_qmp_and_knows_its_peer()
    {
        string path = Path.Combine(_dir, "qmp.sock");
        var auth = new RecordingAuthorizer();
        using var server = new QmpServer(path, _machine, auth);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        using var c = new Client(path);
        Assert.True(c.Read().TryGetProperty("QMP", out _));
        Assert.Equal(JsonValueKind.Object, c.Execute("""{"execute":"qmp_capabilities"}""").GetProperty("return").ValueKind);
        Assert.Equal("running", c.Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
        Assert.Equal(Environment.ProcessId, auth.Peer!.Value.Pid);
        Assert.Equal(int.Parse(File.ReadAllLines("/proc/self/status").First(l => l.StartsWith("Uid:")).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]), auth.Peer!.Value.Uid);

        server.Event("STOP");
        Assert.Equal("STOP", c.Read().GetProperty("event").GetString());
    }

    [Fact]
    public async Task A_second_client_waits_until_the_first_leaves()
    {
        string path = Path.Combine(_dir, "qmp.sock");
        using var server = new QmpServer(path, _machine);
        var first = new Client(path);
        first.Read();
        using var second = new Client(path); // connects (listen queue) but is not served yet
        var greeting = Task.Run(second.Read);
        Assert.NotSame(greeting, await Task.WhenAny(greeting, Task.Delay(500)));
        first.Dispose();
        Assert.Same(greeting, await Task.WhenAny(greeting, Task.Delay(10_000)));
        Assert.True((await greeting).TryGetProperty("QMP", out _));
        Assert.Equal(2, server.Connections);
    }

    [Fact]
    public void A_stale_socket_is_replaced_but_a_regular_file_is_refused()
    {
        string path = Path.Combine(_dir, "qmp.sock");
        using (new QmpServer(path, _machine)) { }
        // A socket file left behind, as by a killed process (.NET would unlink its own on dispose; python does not).
        using (var p = System.Diagnostics.Process.Start("python3", ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{path}')"]))
            p.WaitForExit();
        Assert.Contains("qmp.sock", Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
        using (var server = new QmpServer(path, _machine))
        using (var c = new Client(path))
            Assert.True(c.Read().TryGetProperty("QMP", out _));

        string file = Path.Combine(_dir, "precious.txt");
        File.WriteAllText(file, "keep me");
        var e = Assert.Throws<ControlException>(() => new QmpServer(file, _machine));
        Assert.Contains("not a socket", e.Message);
        Assert.Equal("keep me", File.ReadAllText(file));
        Assert.Throws<ControlException>(() => new QmpServer(Path.Combine(_dir, "no", "such", "dir.sock"), _machine));
    }

    [Fact]
    public void Quit_replies_then_closes_the_connection()
    {
        string path = Path.Combine(_dir, "qmp.sock");
        using var server = new QmpServer(path, _machine);
        using var c = new Client(path);
        c.Read();
        c.Execute("""{"execute":"qmp_capabilities"}""");
        Assert.Equal(JsonValueKind.Object, c.Execute("""{"execute":"quit"}""").GetProperty("return").ValueKind);
        // The reply goes out first, then the machine is told (as QEMU replies before it exits).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!_machine.CallsSnapshot().Contains("quit") && DateTime.UtcNow < deadline) Thread.Sleep(10);
        Assert.Contains("quit", _machine.CallsSnapshot());
    }
}
