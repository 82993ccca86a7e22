using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Csvmm.Cli.Tests;

/// <summary>
/// A minimal QMP client for the binary tests: connects (waiting for the socket to appear), negotiates, runs commands.
/// Events may come before or after a command's reply (QEMU sends STOP before stop's return): the ones read while
/// waiting for a reply are kept, so <see cref="WaitEvent"/> finds them.
/// </summary>
internal sealed class QmpTestClient : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly StreamReader _reader;

    /// <summary>Every event received, in order (name and data).</summary>
    public List<(string Name, JsonElement Data)> Events { get; } = [];
    private readonly HashSet<int> _claimed = [];

    public QmpTestClient(string path, TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (!File.Exists(path) && DateTime.UtcNow < deadline) Thread.Sleep(20);
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _socket.ReceiveTimeout = 30_000;
        _reader = new StreamReader(new NetworkStream(_socket), Encoding.UTF8);
        Assert.True(Read().TryGetProperty("QMP", out _));
        Execute("""{"execute":"qmp_capabilities"}""");
    }

    private JsonElement Read() => JsonDocument.Parse(_reader.ReadLine() ?? throw new Xunit.Sdk.XunitException("QMP closed")).RootElement.Clone();

    private void Keep(JsonElement m) =>
        Events.Add((m.GetProperty("event").GetString()!, m.TryGetProperty("data", out var d) ? d : default));

    /// <summary>Sends one command; returns its reply (return or error).</summary>
    public JsonElement Execute(string command)
    {
        _socket.Send(Encoding.UTF8.GetBytes(command));
        while (true)
        {
            var m = Read();
            if (!m.TryGetProperty("event", out _)) return m;
            Keep(m);
        }
    }

    /// <summary>The command's "return" (fails on an error reply).</summary>
    public JsonElement Return(string command)
    {
        var reply = Execute(command);
        Assert.True(reply.TryGetProperty("return", out var r), $"{command}: {reply}");
        return r;
    }

    public string Status => Return("""{"execute":"query-status"}""").GetProperty("status").GetString()!;

    /// <summary>Waits for the next event named <paramref name="name"/> not yet waited for (it may have come already).</summary>
    public JsonElement WaitEvent(string name, Func<JsonElement, bool>? where = null)
    {
        while (true)
        {
            for (int i = 0; i < Events.Count; i++)
                if (!_claimed.Contains(i) && Events[i].Name == name && (where is null || where(Events[i].Data)))
                {
                    _claimed.Add(i);
                    return Events[i].Data;
                }
            var m = Read();
            if (m.TryGetProperty("event", out _)) Keep(m);
            else throw new Xunit.Sdk.XunitException($"unexpected reply while waiting for {name}: {m}");
        }
    }

    public void Dispose()
    {
        _reader.Dispose();
        _socket.Dispose();
    }
}
