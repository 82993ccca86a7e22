using System.Net.Sockets;
using System.Text.Json;

namespace Csvmm.Control;

/// <summary>A control socket that cannot be set up (path in use by something else, bind failure).</summary>
public sealed class ControlException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The QMP server on a Unix socket (<c>--qmp unix:PATH</c>): the socket file is created mode 0600 (a stale socket at the
/// path is replaced; any other file there is refused), one client is served at a time and later connections wait in
/// the listen queue until it leaves, as with QEMU's monitor. Events go to the connected client. Runs on its own thread.
/// </summary>
public sealed class QmpServer : IDisposable
{
    private const int SolSocket = 1, SoPeercred = 17;

    private readonly IQmpMachine _machine;
    private readonly IQmpAuthorizer? _authorizer;
    private readonly Socket _listener;
    private readonly Thread _thread;
    private readonly Lock _lock = new();
    private readonly Action<string>? _log;
    private readonly Func<int, string?>? _peerContext;
    private QmpSession? _session;
    private Socket? _client;
    private volatile bool _disposed;

    /// <summary>Path of the socket file.</summary>
    public string Path { get; }

    /// <summary>Clients served so far.</summary>
    public int Connections { get; private set; }

    /// <summary>Binds the socket and starts serving.</summary>
    /// <exception cref="ControlException">The path holds something other than a socket, or the socket cannot be bound.</exception>
    /// <param name="peerContext">Reads the security context of a connected client from the socket's descriptor
    /// (getpeercon); null when the host has none. Returning null, or throwing, leaves the peer's context unknown.</param>
    public QmpServer(string path, IQmpMachine machine, IQmpAuthorizer? authorizer = null, Action<string>? log = null,
        Func<int, string?>? peerContext = null)
    {
        _peerContext = peerContext;
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(machine);
        Path = System.IO.Path.GetFullPath(path);
        _machine = machine;
        _authorizer = authorizer;
        _log = log;
        switch (Kind(Path))
        {
            case PathKind.Other:
                throw new ControlException($"--qmp {path}: the path exists and is not a socket");
            case PathKind.Socket:
                File.Delete(Path); // a stale socket of an earlier run, as QEMU replaces it
                break;
        }
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            Tmds.Linux.mode_t old = Tmds.Linux.LibC.umask((Tmds.Linux.mode_t)0x3F); // 0077 while binding: the socket file is born 0600
            try { _listener.Bind(new UnixDomainSocketEndPoint(Path)); }
            finally { Tmds.Linux.LibC.umask(old); }
            File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            _listener.Listen(8);
        }
        catch (SocketException e)
        {
            _listener.Dispose();
            throw new ControlException($"--qmp {path}: {e.Message}", e);
        }
        _thread = new Thread(Serve) { Name = "qmp", IsBackground = true };
        _thread.Start();
    }

    private enum PathKind { None, Socket, Other }

    /// <summary>What is at the path, without following a symlink (lstat; S_IFSOCK = 0140000).</summary>
    private static unsafe PathKind Kind(string path)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
            if (Tmds.Linux.LibC.lstat(p, &st) != 0) return PathKind.None;
        return ((uint)st.st_mode & 0xF000) == 0xC000 ? PathKind.Socket : PathKind.Other;
    }

    /// <summary>Sends an event to the connected client, if any (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN, ...).</summary>
    public void Event(string name, Action<Utf8JsonWriter>? data = null)
    {
        QmpSession? s;
        lock (_lock) s = _session;
        try { s?.Event(name, data); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    private void Serve()
    {
        var buffer = new byte[64 * 1024];
        while (!_disposed)
        {
            Socket client;
            try { client = _listener.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
            var peer = Peer(client);
            if (_peerContext is not null)
            {
                try { peer = peer with { Context = _peerContext((int)client.SafeHandle.DangerousGetHandle()) }; }
                catch (Exception e) { _log?.Invoke($"QMP client's security context unknown: {e.Message}"); }
            }
            _log?.Invoke($"QMP client connected: pid {peer.Pid}, uid {peer.Uid}{(peer.Context is { } c ? ", context " + c : "")}");
            var session = new QmpSession(_machine, bytes => client.Send(bytes), peer, _authorizer);
            lock (_lock) { _session = session; _client = client; Connections++; }
            try
            {
                session.Greet();
                while (!session.QuitRequested)
                {
                    int n = client.Receive(buffer);
                    if (n == 0) break;
                    session.Receive(buffer.AsSpan(0, n));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            finally
            {
                lock (_lock) { _session = null; _client = null; }
                client.Dispose();
                _log?.Invoke("QMP client disconnected");
            }
        }
    }

    private static QmpPeer Peer(Socket s)
    {
        Span<byte> cred = stackalloc byte[12];
        try
        {
            if (s.GetRawSocketOption(SolSocket, SoPeercred, cred) == 12)
                return new QmpPeer(BitConverter.ToInt32(cred), BitConverter.ToInt32(cred[4..]), BitConverter.ToInt32(cred[8..]));
        }
        catch (SocketException) { }
        return new QmpPeer(-1, -1, -1);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _listener.Dispose();
        lock (_lock) _client?.Dispose();
        _thread.Join(TimeSpan.FromSeconds(5));
        try { File.Delete(Path); } catch (IOException) { }
    }
}
