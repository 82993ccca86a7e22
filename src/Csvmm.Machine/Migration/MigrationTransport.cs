using System.Net;
using System.Net.Sockets;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Migration;

/// <summary>Where a live migration goes or comes from: <c>unix:PATH</c> or <c>tcp:HOST:PORT</c> (QEMU's URIs).</summary>
public sealed record MigrationUri(string Text, string? UnixPath, IPEndPoint? Tcp)
{
    /// <summary>Parses a client's or a user's string (anything may be in it): the URI, or why it is none.</summary>
    public static MigrationUri? TryParse(string text, out string? problem)
    {
        problem = null;
        if (text.Contains('\0')) { problem = "a migration URI cannot contain a NUL character"; return null; }
        if (text.StartsWith("unix:", StringComparison.Ordinal) && text.Length > 5)
            return new MigrationUri(text, Path.GetFullPath(text[5..]), null);
        if (text.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string rest = text[4..];
            int colon = rest.LastIndexOf(':');
            if (colon > 0 && int.TryParse(rest[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port)
                && port is > 0 and <= 65535)
            {
                string host = rest[..colon].Trim('[', ']');
                if (host == "localhost") host = "127.0.0.1";
                if (IPAddress.TryParse(host, out var address)) return new MigrationUri(text, null, new IPEndPoint(address, port));
                problem = $"migration URI '{text}': the host must be an IP address or localhost";
                return null;
            }
            problem = $"migration URI '{text}': expected tcp:HOST:PORT with a port from 1 to 65535";
            return null;
        }
        problem = $"migration URI '{text}' is not supported: expected file:PATH, unix:PATH or tcp:HOST:PORT";
        return null;
    }

    /// <summary>Connects the source to a listening destination.</summary>
    public Socket Connect(TimeSpan timeout)
    {
        var socket = UnixPath is not null
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(Tcp!.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            EndPoint ep = UnixPath is not null ? new UnixDomainSocketEndPoint(UnixPath) : Tcp!;
            socket.ConnectAsync(ep, cts.Token).AsTask().GetAwaiter().GetResult();
            socket.SendBufferSize = 4 << 20;
            socket.ReceiveTimeout = 60_000; // the destination's replies: a destination that hangs fails the migration
            return socket;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            throw new SnapshotException($"cannot connect to {Text}: {(e is OperationCanceledException ? "timed out" : e.Message)}");
        }
    }

    /// <summary>
    /// Listens for one source (<c>--incoming</c>): a unix socket file is created mode 0600 (a stale socket at the path
    /// is replaced, any other file refused) and removed once the source is connected.
    /// </summary>
    public Socket Listen()
    {
        Socket listener;
        if (UnixPath is { } path)
        {
            switch (Kind(path))
            {
                case PathKind.Other: throw new SnapshotException($"--incoming {Text}: the path exists and is not a socket");
                case PathKind.Socket: File.Delete(path); break; // a stale socket of an earlier run
            }
            listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                Tmds.Linux.mode_t old = Tmds.Linux.LibC.umask((Tmds.Linux.mode_t)0x3F);
                try { listener.Bind(new UnixDomainSocketEndPoint(path)); }
                finally { Tmds.Linux.LibC.umask(old); }
                if (OperatingSystem.IsLinux()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                listener.Listen(1);
            }
            catch (SocketException e)
            {
                listener.Dispose();
                throw new SnapshotException($"--incoming {Text}: {e.Message}");
            }
            return listener;
        }
        listener = new Socket(Tcp!.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(Tcp);
            listener.Listen(1);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new SnapshotException($"--incoming {Text}: {e.Message}");
        }
        return listener;
    }

    /// <summary>Waits for the source on <paramref name="listener"/> (at most <paramref name="timeout"/>, null: forever).</summary>
    public Socket Accept(Socket listener, TimeSpan? timeout)
    {
        try
        {
            using var cts = timeout is { } t ? new CancellationTokenSource(t) : new CancellationTokenSource();
            var client = listener.AcceptAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            client.ReceiveBufferSize = 4 << 20;
            client.ReceiveTimeout = 60_000; // a source that stops sending for a minute is gone
            return client;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            throw new SnapshotException($"--incoming {Text}: {(e is OperationCanceledException ? "no source connected in time" : e.Message)}");
        }
        finally
        {
            listener.Dispose();
            if (UnixPath is { } path)
                try { File.Delete(path); } catch (IOException) { }
        }
    }

    private enum PathKind { None, Socket, Other }

    /// <summary>What is at the path, without following a symlink (lstat; S_IFSOCK = 0140000), as QmpServer checks its own.</summary>
    private static unsafe PathKind Kind(string path)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
            if (Tmds.Linux.LibC.lstat(p, &st) != 0) return PathKind.None;
        return ((uint)st.st_mode & 0xF000) == 0xC000 ? PathKind.Socket : PathKind.Other;
    }
}
