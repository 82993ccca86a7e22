using System.Text;
using System.Text.Json;
using Csvmm.Control;

namespace Csvmm.Control.Tests;

/// <summary>The QMP protocol as QEMU 7.2 speaks it (docs/interop/qmp-spec.rst), over a fake machine.</summary>
public sealed class QmpSessionTests
{
    private readonly FakeMachine _machine = new();
    private readonly List<string> _out = [];
    private readonly QmpSession _session;

    public QmpSessionTests()
    {
        _session = new QmpSession(_machine, b => _out.Add(Encoding.UTF8.GetString(b)), new QmpPeer(1, 0, 0));
    }

    private JsonElement Send(string text)
    {
        int before = _out.Count;
        _session.Receive(Encoding.UTF8.GetBytes(text));
        Assert.Equal(before + 1, _out.Count);
        return Reply(_out[^1]);
    }

    private static JsonElement Reply(string line)
    {
        Assert.EndsWith("\r\n", line);
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    private void Negotiate() => Assert.Equal(JsonValueKind.Object, Send("""{"execute":"qmp_capabilities"}""").GetProperty("return").ValueKind);

    private static void AssertError(JsonElement reply, string errorClass, string descFragment)
    {
        var e = reply.GetProperty("error");
        Assert.Equal(errorClass, e.GetProperty("class").GetString());
        Assert.Contains(descFragment, e.GetProperty("desc").GetString());
    }

    [Theory]
    [InlineData(new byte[] { 0xC3 })]             // a lead byte without its continuation
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })] // an encoded surrogate
    [InlineData(new byte[] { 0xFF })]
    public void Invalid_utf8_in_a_string_is_a_parse_error_wherever_it_is(byte[] bad)
    {
        // Found by the qmp fuzz target: the session threw when it read such a string (tests/fuzz/regressions/qmp).
        Negotiate();
        foreach (string template in new[] { "{\"execute\":\"@\"}", "{\"execute\":\"migrate\",\"arguments\":{\"@\":1}}", "{\"@\":1}", "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:@\"}}" })
        {
            int at = template.IndexOf('@');
            byte[] text = [.. Encoding.UTF8.GetBytes(template[..at]), .. bad, .. Encoding.UTF8.GetBytes(template[(at + 1)..])];
            int before = _out.Count;
            _session.Receive(text);
            Assert.Equal(before + 1, _out.Count);
            AssertError(Reply(_out[^1]), "GenericError", "invalid UTF-8");
        }
        Assert.Equal("running", Send("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
        Assert.DoesNotContain(_machine.Calls, c => c.StartsWith("migrate", StringComparison.Ordinal));
    }

    [Fact]
    public void Greeting_names_the_version_and_no_capabilities()
    {
        _session.Greet();
        var g = Reply(_out.Single()).GetProperty("QMP");
        Assert.Equal(QmpSession.Version.Major, g.GetProperty("version").GetProperty("qemu").GetProperty("major").GetInt32());
        Assert.Equal("csvmm", g.GetProperty("version").GetProperty("package").GetString());
        Assert.Equal(0, g.GetProperty("capabilities").GetArrayLength());
    }

    [Fact]
    public void Commands_before_negotiation_are_refused_as_qemu_refuses_them()
    {
        AssertError(Send("""{"execute":"query-status"}"""), "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
        Negotiate();
        AssertError(Send("""{"execute":"qmp_capabilities"}"""), "CommandNotFound", "already complete");
        Assert.Empty(_machine.Calls);
    }

    [Fact]
    public void Status_stop_cont_and_ids_are_echoed_whatever_their_type()
    {
        Negotiate();
        var r = Send("""{"execute":"query-status","id":"s1"}""");
        Assert.Equal("running", r.GetProperty("return").GetProperty("status").GetString());
        Assert.True(r.GetProperty("return").GetProperty("running").GetBoolean());
        Assert.Equal("s1", r.GetProperty("id").GetString());
        Assert.Equal(7, Send("""{"execute":"stop","id":7}""").GetProperty("id").GetInt32());
        Assert.Equal("paused", Send("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Object, Send("""{"execute":"cont","id":{"a":[1,2]}}""").GetProperty("id").ValueKind);
        Assert.Equal(["pause", "resume"], _machine.Calls);
    }

    [Fact]
    public void Reset_powerdown_and_quit_reach_the_machine()
    {
        Negotiate();
        Send("""{"execute":"system_reset"}""");
        Send("""{"execute":"system_powerdown"}""");
        Assert.False(_session.QuitRequested);
        Send("""{"execute":"quit"}""");
        Assert.True(_session.QuitRequested);
        Assert.Equal(["reset", "powerbutton", "quit"], _machine.Calls);
    }

    [Fact]
    public void A_failed_stop_and_cont_from_shutdown_are_errors()
    {
        Negotiate();
        _machine.PauseWorks = false;
        AssertError(Send("""{"execute":"stop"}"""), "GenericError", "did not stop");
        _machine.State = "shutdown";
        AssertError(Send("""{"execute":"cont"}"""), "GenericError", "shutdown");
    }

    [Fact]
    public void Queries_describe_cpus_disks_stats_and_commands()
    {
        Negotiate();
        var cpus = Send("""{"execute":"query-cpus-fast"}""").GetProperty("return");
        Assert.Equal(2, cpus.GetArrayLength());
        Assert.Equal(1235, cpus[1].GetProperty("thread-id").GetInt64());
        Assert.Equal("x86_64", cpus[0].GetProperty("target").GetString());
        var block = Send("""{"execute":"query-block"}""").GetProperty("return");
        Assert.Equal("ide0-0", block[1].GetProperty("device").GetString());
        Assert.True(block[1].GetProperty("inserted").GetProperty("ro").GetBoolean());
        Assert.Equal("/img/a.img", block[0].GetProperty("inserted").GetProperty("file").GetString());
        Assert.Equal(42, Send("""{"execute":"query-stats"}""").GetProperty("return").GetProperty("exits").GetInt64());
        var names = Send("""{"execute":"query-commands"}""").GetProperty("return").EnumerateArray().Select(c => c.GetProperty("name").GetString()).ToList();
        Assert.Equal(QmpSession.Commands, names);
        Assert.Equal(0, Send("""{"execute":"query-version"}""").GetProperty("return").GetProperty("qemu").GetProperty("major").GetInt32());
    }

    [Theory]
    [InlineData("""{"execute" "stop"}""", "GenericError", "JSON parse error")]
    [InlineData("""{"execute":"stop",}""", "GenericError", "JSON parse error")]
    [InlineData("""[1,2,3]""", "GenericError", "QMP input must be a JSON object")]
    [InlineData("\"hello\"", "GenericError", "QMP input must be a JSON object")]
    [InlineData("""{"arguments":{}}""", "GenericError", "lacks member 'execute'")]
    [InlineData("""{"execute":5}""", "GenericError", "'execute' must be a string")]
    [InlineData("""{"execute":"stop","arguments":[]}""", "GenericError", "'arguments' must be an object")]
    [InlineData("""{"execute":"stop","extra":1}""", "GenericError", "member 'extra' is unexpected")]
    [InlineData("""{"execute":"stop","arguments":{"now":true}}""", "GenericError", "Parameter 'now' is unexpected")]
    [InlineData("""{"execute":"savevm"}""", "CommandNotFound", "The command savevm has not been found")]
    [InlineData("""{"exec-oob":"stop"}""", "GenericError", "out-of-band")]
    public void Bad_input_gets_an_error_reply(string input, string errorClass, string fragment)
    {
        Negotiate();
        AssertError(Send(input), errorClass, fragment);
        Assert.Empty(_machine.Calls);
        // The session still works afterwards.
        Assert.Equal("running", Send("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
    }

    [Fact]
    public void Migrate_to_a_file_reports_completion_and_query_migrate_describes_it()
    {
        Negotiate();
        Assert.Empty(Send("""{"execute":"query-migrate"}""").GetProperty("return").EnumerateObject());
        _session.Receive("""{"execute":"migrate","arguments":{"uri":"file:/tmp/vm.snap"}}"""u8);
        Assert.Equal(JsonValueKind.Object, Reply(_out[^2]).GetProperty("return").ValueKind);
        var migration = Reply(_out[^1]);                                   // then the MIGRATION event
        Assert.Equal("MIGRATION", migration.GetProperty("event").GetString());
        Assert.Equal("completed", migration.GetProperty("data").GetProperty("status").GetString());
        var q = Send("""{"execute":"query-migrate"}""").GetProperty("return");
        Assert.Equal("completed", q.GetProperty("status").GetString());
        Assert.Equal(3, q.GetProperty("downtime").GetInt64());
        Assert.Equal(4096, q.GetProperty("ram").GetProperty("transferred").GetInt64());
        Assert.Equal(["migrate file:/tmp/vm.snap"], _machine.Calls);
        AssertError(Send("""{"execute":"migrate","arguments":{}}"""), "GenericError", "Parameter 'uri' is missing");
        AssertError(Send("""{"execute":"migrate","arguments":{"uri":5}}"""), "GenericError", "expected: string");
        AssertError(Send("""{"execute":"migrate","arguments":{"uri":"file:x","detach":"yes"}}"""), "GenericError", "expected: boolean");
        _machine.MigrateError = "a VM with disks cannot be saved yet";
        AssertError(Send("""{"execute":"migrate","arguments":{"uri":"file:/tmp/b"}}"""), "GenericError", "disks");
        Assert.Equal(JsonValueKind.Object, Send("""{"execute":"migrate_cancel"}""").GetProperty("return").ValueKind);
        Assert.Equal("migrate_cancel", _machine.Calls[^1]);
    }

    [Fact]
    public void Unknown_capabilities_are_refused()
    {
        AssertError(Send("""{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"""), "GenericError", "Capability 'oob' not available");
        AssertError(Send("""{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"""), "GenericError", "expected: array");
        Negotiate();
    }

    [Fact]
    public void Several_commands_in_one_read_and_one_command_over_many_reads()
    {
        Negotiate();
        _session.Receive("""{"execute":"stop"} {"execute":"cont"}{"execute":"query-status","id":1}"""u8);
        Assert.Equal(4, _out.Count);
        var bytes = """ {"execute" : "query-status", "id": "a}\"{"}"""u8.ToArray();
        foreach (var b in bytes) _session.Receive([b]);
        Assert.Equal(5, _out.Count);
        Assert.Equal("a}\"{", Reply(_out[^1]).GetProperty("id").GetString());
    }

    [Fact]
    public void Oversized_and_deeply_nested_input_is_refused_and_the_session_goes_on()
    {
        Negotiate();
        AssertError(Send(new string('[', 100) + new string(']', 100)), "GenericError", "too large");
        var huge = "{\"execute\":\"" + new string('x', JsonStreamSplitter.MaxLength + 10) + "\"}";
        AssertError(Send(huge), "GenericError", "too large");
        Assert.Equal("running", Send("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
    }

    [Fact]
    public void Events_are_sent_only_after_negotiation_with_a_timestamp()
    {
        _session.Event("STOP");
        Assert.Empty(_out);
        Negotiate();
        _session.Event("RESET", w => { w.WriteBoolean("guest", false); w.WriteString("reason", "host-qmp-system-reset"); });
        var e = Reply(_out[^1]);
        Assert.Equal("RESET", e.GetProperty("event").GetString());
        Assert.False(e.GetProperty("data").GetProperty("guest").GetBoolean());
        long seconds = e.GetProperty("timestamp").GetProperty("seconds").GetInt64();
        Assert.InRange(seconds, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 5, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 5);
        Assert.InRange(e.GetProperty("timestamp").GetProperty("microseconds").GetInt64(), 0, 999_999);
    }

    private sealed class DenyStop : IQmpAuthorizer
    {
        public readonly List<(QmpPeer, string)> Asked = [];
        public string? Check(QmpPeer peer, string command, string? target)
        {
            Asked.Add((peer, command));
            return command == "stop" ? "SELinux denied { control } for the VM" : null;
        }
    }

    [Fact]
    public void The_authorizer_decides_every_command_and_a_denial_is_a_generic_error()
    {
        var auth = new DenyStop();
        var out2 = new List<string>();
        var s = new QmpSession(_machine, b => out2.Add(Encoding.UTF8.GetString(b)), new QmpPeer(99, 1000, 1000), auth);
        s.Receive("""{"execute":"qmp_capabilities"}{"execute":"stop","id":3}{"execute":"query-status"}"""u8);
        AssertError(Reply(out2[1]), "GenericError", "SELinux denied");
        Assert.Equal(3, Reply(out2[1]).GetProperty("id").GetInt32());
        Assert.Empty(_machine.Calls);
        Assert.Equal([(new QmpPeer(99, 1000, 1000), "qmp_capabilities"), (new QmpPeer(99, 1000, 1000), "stop"), (new QmpPeer(99, 1000, 1000), "query-status")], auth.Asked);
    }

    [Fact]
    public void Random_bytes_never_throw_and_every_reply_is_json()
    {
        var rng = new Random(1234);
        Negotiate();
        var alphabet = "{}[]\":,\\ abcdefexecute0123456789\r\n\t"u8.ToArray();
        for (int round = 0; round < 2000; round++)
        {
            var chunk = new byte[rng.Next(1, 64)];
            for (int i = 0; i < chunk.Length; i++) chunk[i] = rng.Next(8) == 0 ? (byte)rng.Next(256) : alphabet[rng.Next(alphabet.Length)];
            _session.Receive(chunk);
        }
        Assert.All(_out, line => Reply(line));
    }
}
