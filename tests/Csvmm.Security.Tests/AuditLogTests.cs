using System.Runtime.InteropServices;
using System.Text;
using Csvmm.Security.Native;
using Serilog.Core;
using Serilog.Events;

namespace Csvmm.Security.Tests;

/// <summary>A fake libaudit: records every call with the exact bytes passed; failures are set per test.</summary>
internal sealed unsafe class FakeLibAudit : ILibAudit
{
    public int OpenResult = 7, OpenErrno, SendResult = 42, SendErrno;
    public readonly List<(int Fd, int Type, string Message, bool NullHost, bool NullAddr, bool NullTty, uint Uid)> Sent = [];
    public readonly List<int> Closed = [];
    private int _errno;

    public int AuditOpen()
    {
        _errno = OpenErrno;
        return OpenResult;
    }

    public void AuditClose(int fd) => Closed.Add(fd);

    public int AuditLogUserAvcMessage(int fd, int type, byte* message, byte* hostname, byte* addr, byte* tty, uint uid)
    {
        Sent.Add((fd, type, Marshal.PtrToStringUTF8((nint)message)!, hostname == null, addr == null, tty == null, uid));
        _errno = SendErrno;
        return SendResult;
    }

    public uint GetUid() => 1000;
    public int LastError => _errno;
}

internal sealed class RecordingAudit : IAvcAudit
{
    public List<string> Lines { get; } = [];
    public void UserAvc(string avcLine) => Lines.Add(avcLine);
}

internal sealed class ListSink : ILogEventSink
{
    public List<LogEvent> Events { get; } = [];
    public void Emit(LogEvent logEvent) => Events.Add(logEvent);
    public Serilog.ILogger Logger() => new Serilog.LoggerConfiguration().MinimumLevel.Verbose().WriteTo.Sink(this).CreateLogger();
}

public sealed class AuditLogTests
{
    private const string Line = "avc:  denied  { entrypoint } for  pid=1 comm=\"csvmm\" path=\"/a.img\" scontext=user_u:user_r:user_t tcontext=system_u:object_r:untrusted_disk_t tclass=vm permissive=0";

    [Fact]
    public void A_decision_becomes_one_user_avc_record_with_the_line_as_its_message()
    {
        var lib = new FakeLibAudit();
        using var audit = AuditLog.Open(lib, Serilog.Core.Logger.None)!;
        audit.UserAvc(Line);
        var sent = Assert.Single(lib.Sent);
        Assert.Equal((7, 1107, Line, true, true, true, 1000u), sent);
        Assert.Equal(1, audit.Sent);
        audit.Dispose();
        Assert.Equal([7], lib.Closed);
        audit.UserAvc(Line); // closed: nothing more is sent
        Assert.Single(lib.Sent);
    }

    [Theory]
    [InlineData(93)] // EPROTONOSUPPORT
    [InlineData(22)] // EINVAL
    [InlineData(97)] // EAFNOSUPPORT
    public void A_kernel_without_audit_turns_auditing_off_quietly(int errno)
    {
        var sink = new ListSink();
        Assert.Null(AuditLog.Open(new FakeLibAudit { OpenResult = -1, OpenErrno = errno }, sink.Logger()));
        Assert.DoesNotContain(sink.Events, e => e.Level >= LogEventLevel.Warning);
        Assert.Contains(sink.Events, e => e.RenderMessage().Contains("no audit system"));
    }

    [Fact]
    public void Any_other_open_failure_is_a_warning_and_no_audit()
    {
        var sink = new ListSink();
        Assert.Null(AuditLog.Open(new FakeLibAudit { OpenResult = -1, OpenErrno = 13 }, sink.Logger()));
        Assert.Contains(sink.Events, e => e.Level == LogEventLevel.Warning && e.RenderMessage().Contains("errno 13"));
    }

    [Fact]
    public void Refused_records_are_counted_and_warned_about_once_and_never_throw()
    {
        var sink = new ListSink();
        var lib = new FakeLibAudit { SendResult = -1, SendErrno = 105 };
        using var audit = AuditLog.Open(lib, sink.Logger())!;
        for (int i = 0; i < 3; i++) audit.UserAvc(Line);
        Assert.Equal(3, audit.Refused);
        Assert.Equal(0, audit.Sent);
        Assert.Single(sink.Events, e => e.Level == LogEventLevel.Warning);
    }

    [Fact]
    public void The_real_libaudit_binds_and_opens_or_says_why_not()
    {
        // Every entry point resolves (a wrong name would throw EntryPointNotFoundException here, not on an SELinux host).
        var sink = new ListSink();
        using var audit = AuditLog.Open(sink.Logger());
        Assert.DoesNotContain(sink.Events, e => e.RenderMessage().Contains("not usable"));
        Assert.True(audit is not null || sink.Events.Count == 1);
        nint lib = NativeLibrary.Load("libaudit.so.1");
        foreach (string symbol in new[] { "audit_open", "audit_close", "audit_log_user_avc_message" })
            Assert.True(NativeLibrary.TryGetExport(lib, symbol, out _), symbol);
    }

    [Fact]
    public void A_nul_in_a_line_ends_the_message_there()
    {
        var lib = new FakeLibAudit();
        using var audit = AuditLog.Open(lib, Serilog.Core.Logger.None)!;
        audit.UserAvc("avc:  granted  { read }\0 injected");
        Assert.Equal("avc:  granted  { read }", Assert.Single(lib.Sent).Message);
    }
}

[Collection(LibsepolCollection.Name)]
public sealed class AuditedDecisionTests(PolicyFixture policy)
{
    [Fact]
    public void Every_management_decision_with_an_avc_line_is_audited()
    {
        var audit = new RecordingAudit();
        var gate = new ManagementGate(policy.Engine, EnforcementMode.Enforcing, "user_u:object_r:vm_user_t", new AvcOrigin(1, "csvmm")) { Audit = audit };
        var granted = gate.Check(StandalonePolicy.DefaultProcessContext, VmOperation.Save, "qmp:migrate");
        var denied = gate.Check("guest_u:guest_r:guest_t", VmOperation.Control, "qmp:stop");
        Assert.Equal([granted.AvcLine!, denied.AvcLine!], audit.Lines);
        Assert.Contains("granted", audit.Lines[0]);
        Assert.Contains("denied", audit.Lines[1]);
        // Disabled checks make no decision and no record.
        var off = new ManagementGate(policy.Engine, EnforcementMode.Disabled, "user_u:object_r:vm_user_t", new AvcOrigin(1, "csvmm")) { Audit = audit };
        off.Check("guest_u:guest_r:guest_t", VmOperation.Control, "qmp:stop");
        Assert.Equal(2, audit.Lines.Count);
    }

    [Fact]
    public void The_disk_gate_audits_each_entrypoint_check_and_hands_its_audit_to_the_vms_management()
    {
        string dir = Directory.CreateTempSubdirectory("csvmm-audit-").FullName;
        try
        {
            string img = Path.Combine(dir, "ok.img");
            File.WriteAllBytes(img, new byte[1 << 16]);
            string fc = Path.Combine(dir, "file_contexts");
            File.WriteAllText(fc, $"{dir.Replace(".", "\\.", StringComparison.Ordinal)}/ok\\.img -- system_u:object_r:qemu_virtdisk_t\n");
            var audit = new RecordingAudit();
            var options = new SecurityOptions(EnforcementMode.Enforcing, policy.PolicyPath, fc, StandalonePolicy.DefaultProcessContext, TrustXattr: false);
            using var outcome = new DiskGate(options, Serilog.Core.Logger.None, DiskGatePlanTests.Absent, audit).Admit([img]);
            Assert.Null(outcome.Refusal);
            // read/open/getattr, the type_change and the entrypoint: three lines, all granted.
            Assert.Equal(3, audit.Lines.Count);
            Assert.All(audit.Lines, l => Assert.StartsWith("avc:  granted", l));
            Assert.Same(audit, outcome.Management!.Audit);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
