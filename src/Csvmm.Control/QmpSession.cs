using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Csvmm.Control;

/// <summary>A QMP error reply: its class (GenericError, CommandNotFound, ...) and description.</summary>
public sealed class QmpException(string errorClass, string description) : Exception(description)
{
    public string ErrorClass { get; } = errorClass;
}

/// <summary>
/// Decides whether a QMP client may issue a command (the MAC hook): null to allow, or the reason it is denied, which
/// becomes the GenericError the client sees.
/// </summary>
public interface IQmpAuthorizer
{
    /// <summary>May the connected client run <paramref name="command"/> (on <paramref name="target"/>: <c>migrate</c>'s URI, else null)?</summary>
    string? Check(QmpPeer peer, string command, string? target);
}

/// <summary>Who is on the other end of the socket: SO_PEERCRED's pid, uid, gid, and its security context when the
/// server was given a way to read it (getpeercon on an SELinux host), else null.</summary>
public readonly record struct QmpPeer(int Pid, int Uid, int Gid, string? Context = null);

/// <summary>
/// One QMP conversation (docs/interop/qmp-spec.rst, as QEMU 7.2 speaks it): the greeting, capabilities negotiation,
/// then commands, each answered with <c>{"return": ...}</c> or <c>{"error": {"class", "desc"}}</c> carrying the
/// command's <c>id</c>, and asynchronous events once negotiation is done. Transport-free: bytes in through
/// <see cref="Receive"/>, JSON texts out through the writer given to the constructor (each ends with CRLF, as QEMU's).
/// Bad input of any kind is an error reply; nothing a client sends throws out of this class.
/// </summary>
public sealed class QmpSession
{
    /// <summary>csvmm's version as QMP reports it.</summary>
    public static readonly (int Major, int Minor, int Micro) Version = (0, 6, 0);

    private readonly IQmpMachine _machine;
    private readonly Action<byte[]> _write;
    private readonly IQmpAuthorizer? _authorizer;
    private readonly QmpPeer _peer;
    private readonly JsonStreamSplitter _splitter = new();
    private readonly Lock _writeLock = new();
    private bool _negotiated;

    /// <summary>Command names, in the order <c>query-commands</c> lists them.</summary>
    public static readonly string[] Commands =
    [
        "qmp_capabilities", "query-commands", "query-version", "query-status", "stop", "cont", "system_reset",
        "system_powerdown", "quit", "query-cpus-fast", "query-block", "query-stats", "migrate", "query-migrate", "migrate_cancel",
    ];

    public QmpSession(IQmpMachine machine, Action<byte[]> write, QmpPeer peer, IQmpAuthorizer? authorizer = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(write);
        _machine = machine;
        _write = write;
        _peer = peer;
        _authorizer = authorizer;
    }

    /// <summary>True once the client has quit the VM (<c>quit</c> succeeded): the transport closes after the reply.</summary>
    public bool QuitRequested { get; private set; }

    /// <summary>Sends the greeting. Call once, first.</summary>
    public void Greet() => Send(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("QMP");
        w.WritePropertyName("version");
        WriteVersion(w);
        w.WriteStartArray("capabilities");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>Feeds bytes from the client; every complete command in them is executed and answered, in order.</summary>
    public void Receive(ReadOnlySpan<byte> data)
    {
        foreach (var piece in _splitter.Push(data))
        {
            if (piece.TooLarge)
                SendError(null, "GenericError", $"JSON input too large (more than {JsonStreamSplitter.MaxLength} bytes or {JsonStreamSplitter.MaxDepth} levels)");
            else
                Execute(piece.Text!);
            if (QuitRequested) return;
        }
    }

    /// <summary>Sends an event (once negotiation is done; before that QEMU sends none either).</summary>
    public void Event(string name, Action<Utf8JsonWriter>? data = null)
    {
        if (!Volatile.Read(ref _negotiated)) return;
        long us = (DateTimeOffset.UtcNow.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / (TimeSpan.TicksPerMillisecond / 1000);
        Send(w =>
        {
            w.WriteStartObject();
            w.WriteString("event", name);
            w.WriteStartObject("data");
            data?.Invoke(w);
            w.WriteEndObject();
            w.WriteStartObject("timestamp");
            w.WriteNumber("seconds", us / 1_000_000);
            w.WriteNumber("microseconds", us % 1_000_000);
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    private void Execute(byte[] text)
    {
        JsonDocument doc;
        // The reader leaves string contents unchecked until they are read; a client's bytes are checked here, whole.
        if (!System.Text.Unicode.Utf8.IsValid(text))
        {
            SendError(null, "GenericError", "JSON parse error, invalid UTF-8 sequence in string");
            return;
        }
        try
        {
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = JsonStreamSplitter.MaxDepth });
        }
        catch (JsonException e)
        {
            SendError(null, "GenericError", $"JSON parse error, {FirstLine(e.Message)}");
            return;
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                SendError(null, "GenericError", "QMP input must be a JSON object");
                return;
            }
            JsonElement? id = root.TryGetProperty("id", out var idValue) ? idValue : null;
            try
            {
                string name = ValidateEnvelope(root);
                JsonElement? args = root.TryGetProperty("arguments", out var a) ? a : null;
                if (!_negotiated && name != "qmp_capabilities")
                    throw new QmpException("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
                if (!Commands.Contains(name))
                    throw new QmpException("CommandNotFound", $"The command {name} has not been found");
                if (_authorizer?.Check(_peer, name, Target(name, args)) is { } denial)
                    throw new QmpException("GenericError", denial);
                Run(name, args, id);
            }
            catch (QmpException e)
            {
                SendError(id, e.ErrorClass, e.Message);
            }
        }
    }

    /// <summary>What a command acts on, where MAC tells operations apart by it: <c>migrate</c>'s URI.</summary>
    private static string? Target(string name, JsonElement? args) =>
        name == "migrate" && args is { } a && a.TryGetProperty("uri", out var uri) && uri.ValueKind == JsonValueKind.String ? uri.GetString() : null;

    private static string ValidateEnvelope(JsonElement root)
    {
        string? name = null;
        foreach (var p in root.EnumerateObject())
        {
            switch (p.Name)
            {
                case "execute":
                    if (p.Value.ValueKind != JsonValueKind.String)
                        throw new QmpException("GenericError", "QMP input member 'execute' must be a string");
                    name = p.Value.GetString();
                    break;
                case "arguments":
                    if (p.Value.ValueKind != JsonValueKind.Object)
                        throw new QmpException("GenericError", "QMP input member 'arguments' must be an object");
                    break;
                case "id":
                    break;
                case "exec-oob":
                    throw new QmpException("GenericError", "QMP input member 'exec-oob' is not supported: out-of-band execution was not negotiated");
                default:
                    throw new QmpException("GenericError", $"QMP input member '{p.Name}' is unexpected");
            }
        }
        return name ?? throw new QmpException("GenericError", "QMP input lacks member 'execute'");
    }

    private void Run(string name, JsonElement? args, JsonElement? id)
    {
        switch (name)
        {
            case "qmp_capabilities":
                AllowArguments(args, "enable");
                if (args is { } a && a.TryGetProperty("enable", out var enable))
                {
                    if (enable.ValueKind != JsonValueKind.Array)
                        throw new QmpException("GenericError", "Invalid parameter type for 'enable', expected: array");
                    foreach (var cap in enable.EnumerateArray())
                        throw new QmpException("GenericError", $"Capability '{(cap.ValueKind == JsonValueKind.String ? cap.GetString() : cap.ToString())}' not available");
                }
                if (_negotiated)
                    throw new QmpException("CommandNotFound", "Capabilities negotiation is already complete, command ignored");
                Return(id, EmptyObject);
                Volatile.Write(ref _negotiated, true);
                return;
            case "query-commands":
                AllowArguments(args);
                Return(id, w =>
                {
                    w.WriteStartArray();
                    foreach (var c in Commands) { w.WriteStartObject(); w.WriteString("name", c); w.WriteEndObject(); }
                    w.WriteEndArray();
                });
                return;
            case "query-version":
                AllowArguments(args);
                Return(id, WriteVersion);
                return;
            case "query-status":
            {
                AllowArguments(args);
                string status = _machine.Status;
                Return(id, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("status", status);
                    w.WriteBoolean("singlestep", false);
                    w.WriteBoolean("running", status == "running");
                    w.WriteEndObject();
                });
                return;
            }
            case "stop":
                AllowArguments(args);
                if (!_machine.Pause()) throw new QmpException("GenericError", "the vCPUs did not stop");
                Return(id, EmptyObject);
                return;
            case "cont":
                AllowArguments(args);
                if (_machine.Status is not ("paused" or "running" or "postmigrate"))
                    throw new QmpException("GenericError", $"the VM cannot be continued from state '{_machine.Status}'");
                _machine.Resume();
                Return(id, EmptyObject);
                return;
            case "system_reset":
                AllowArguments(args);
                _machine.Reset();
                Return(id, EmptyObject);
                return;
            case "system_powerdown":
                AllowArguments(args);
                _machine.PowerButton();
                Return(id, EmptyObject);
                return;
            case "quit":
                AllowArguments(args);
                Return(id, EmptyObject);
                QuitRequested = true;
                _machine.Quit();
                return;
            case "query-cpus-fast":
                AllowArguments(args);
                Return(id, w =>
                {
                    w.WriteStartArray();
                    foreach (var cpu in _machine.Cpus)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("cpu-index", cpu.Index);
                        w.WriteString("qom-path", $"/machine/unattached/device[{cpu.Index}]");
                        w.WriteNumber("thread-id", cpu.ThreadId);
                        w.WriteStartObject("props");
                        w.WriteNumber("core-id", 0);
                        w.WriteNumber("thread-id", 0);
                        w.WriteNumber("socket-id", cpu.Index);
                        w.WriteEndObject();
                        w.WriteString("target", "x86_64");
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return;
            case "query-block":
                AllowArguments(args);
                Return(id, w =>
                {
                    w.WriteStartArray();
                    foreach (var b in _machine.Block)
                    {
                        w.WriteStartObject();
                        w.WriteString("device", b.Device);
                        w.WriteBoolean("locked", false);
                        w.WriteBoolean("removable", false);
                        w.WriteString("type", "unknown");
                        w.WriteStartObject("inserted");
                        w.WriteString("file", b.File);
                        w.WriteString("drv", "raw");
                        w.WriteBoolean("ro", b.ReadOnly);
                        w.WriteBoolean("encrypted", false);
                        w.WriteNumber("image-size", b.Size);
                        w.WriteString("interface", b.Interface);
                        w.WriteEndObject();
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return;
            case "migrate":
            {
                AllowArguments(args, "uri", "detach", "blk", "inc", "resume");
                if (args is not { } margs || !margs.TryGetProperty("uri", out var uri))
                    throw new QmpException("GenericError", "Parameter 'uri' is missing");
                if (uri.ValueKind != JsonValueKind.String)
                    throw new QmpException("GenericError", "Invalid parameter type for 'uri', expected: string");
                foreach (var flag in new[] { "detach", "blk", "inc", "resume" })
                    if (margs.TryGetProperty(flag, out var f) && f.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                        throw new QmpException("GenericError", $"Invalid parameter type for '{flag}', expected: boolean");
                if (_machine.Migrate(uri.GetString()!) is { } error)
                    throw new QmpException("GenericError", error);
                Return(id, EmptyObject);
                // A snapshot file is written inside the command; a live migration runs on, and the machine sends its events.
                if (_machine.Migration is { Status: "completed", TransferredBytes: null }) Event("MIGRATION", w => w.WriteString("status", "completed"));
                return;
            }
            case "query-migrate":
            {
                AllowArguments(args);
                var m = _machine.Migration;
                Return(id, w =>
                {
                    w.WriteStartObject();
                    if (m is not null)
                    {
                        w.WriteString("status", m.Status);
                        w.WriteNumber("total-time", m.TotalTimeMs);
                        if (m.Status == "completed") w.WriteNumber("downtime", m.DowntimeMs);
                        if (m.TransferredBytes is not null) w.WriteNumber("setup-time", m.SetupTimeMs);
                        w.WriteStartObject("ram");
                        w.WriteNumber("total", m.RamBytes);
                        w.WriteNumber("transferred", m.TransferredBytes ?? m.RamBytes);
                        w.WriteNumber("remaining", m.RemainingPages * 4096);
                        if (m.TransferredBytes is not null)
                        {
                            w.WriteNumber("duplicate", m.ZeroPages);
                            w.WriteNumber("normal", m.NormalPages);
                            w.WriteNumber("normal-bytes", m.NormalPages * 4096);
                            w.WriteNumber("dirty-sync-count", m.DirtySyncCount);
                            w.WriteNumber("page-size", 4096);
                        }
                        w.WriteEndObject();
                        if (m.Error is { } e) w.WriteString("error-desc", e);
                    }
                    w.WriteEndObject();
                });
                return;
            }
            case "migrate_cancel":
                AllowArguments(args);
                _machine.CancelMigration();
                Return(id, EmptyObject);
                return;
            case "query-stats":
                AllowArguments(args);
                var stats = _machine.Stats();
                Return(id, w =>
                {
                    w.WriteStartObject();
                    foreach (var (k, v) in stats) w.WriteNumber(k, v);
                    w.WriteEndObject();
                });
                return;
        }
        throw new QmpException("CommandNotFound", $"The command {name} has not been found");
    }

    /// <summary>QMP's VersionInfo: {"qemu": {"micro", "minor", "major"}, "package"}.</summary>
    private static void WriteVersion(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartObject("qemu");
        w.WriteNumber("micro", Version.Micro);
        w.WriteNumber("minor", Version.Minor);
        w.WriteNumber("major", Version.Major);
        w.WriteEndObject();
        w.WriteString("package", "csvmm");
        w.WriteEndObject();
    }

    private static void AllowArguments(JsonElement? args, params string[] allowed)
    {
        if (args is not { } a) return;
        foreach (var p in a.EnumerateObject())
            if (!allowed.Contains(p.Name))
                throw new QmpException("GenericError", $"Parameter '{p.Name}' is unexpected");
    }

    private static void EmptyObject(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteEndObject();
    }

    private void Return(JsonElement? id, Action<Utf8JsonWriter> value) => Send(w =>
    {
        w.WriteStartObject();
        w.WritePropertyName("return");
        value(w);
        if (id is { } i) { w.WritePropertyName("id"); i.WriteTo(w); }
        w.WriteEndObject();
    });

    private void SendError(JsonElement? id, string errorClass, string description) => Send(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("class", errorClass);
        w.WriteString("desc", description);
        w.WriteEndObject();
        if (id is { } i) { w.WritePropertyName("id"); i.WriteTo(w); }
        w.WriteEndObject();
    });

    private void Send(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
            body(w);
        buffer.Write("\r\n"u8);
        lock (_writeLock) _write(buffer.WrittenSpan.ToArray());
    }

    private static string FirstLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }
}
