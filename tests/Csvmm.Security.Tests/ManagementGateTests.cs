using System.Text.RegularExpressions;
using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>
/// MAC on VM management: every (domain, VM type, operation) of the standalone policy decided by libsepol through
/// ManagementGate, against what setools' sesearch says of the same compiled policy; then modes, AVC lines and
/// failing closed.
/// </summary>
[Collection(LibsepolCollection.Name)]
public sealed partial class ManagementGateTests(PolicyFixture policy)
{
    private static readonly Dictionary<string, string> s_domains = new()
    {
        ["user_t"] = StandalonePolicy.DefaultProcessContext,
        ["staff_t"] = "staff_u:staff_r:staff_t",
        ["guest_t"] = "guest_u:guest_r:guest_t",
    };
    // VM contexts: a VM type from a disk, or (no disk) the starting domain's own context.
    private static readonly Dictionary<string, string> s_vms = new()
    {
        ["vm_user_t"] = "user_u:object_r:vm_user_t",
        ["vm_staff_t"] = "staff_u:object_r:vm_staff_t",
        ["vm_sandbox_t"] = "staff_u:object_r:vm_sandbox_t",
        ["vm_guest_t"] = "guest_u:object_r:vm_guest_t",
        ["user_t"] = StandalonePolicy.DefaultProcessContext,
        ["staff_t"] = "staff_u:staff_r:staff_t",
        ["guest_t"] = "guest_u:guest_r:guest_t",
    };

    [Fact]
    public async Task Every_decision_matches_sesearch()
    {
        var engine = policy.Engine;
        int granted = 0, denied = 0;
        foreach (var (domain, source) in s_domains)
        {
            var r = await Tool.RunAsync("sesearch", policy.PolicyPath, "-A", "-s", domain, "-c", "vm");
            Assert.True(r.ExitCode == 0, r.StdErr);
            var rules = RuleLine().Matches(r.StdOut).Select(m => (Target: m.Groups[2].Value,
                Perms: (m.Groups[3].Success ? m.Groups[3].Value : m.Groups[4].Value).Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToList();
            foreach (var (vmType, vmContext) in s_vms)
            {
                string target = vmType == domain ? "self" : vmType;
                var gate = new ManagementGate(engine, EnforcementMode.Enforcing, vmContext, new AvcOrigin(1, "csvmm"));
                foreach (var op in Enum.GetValues<VmOperation>())
                {
                    string perm = ManagementGate.PermissionFor(op);
                    bool oracle = rules.Any(x => (x.Target == vmType || x.Target == target) && x.Perms.Contains(perm));
                    var d = gate.Check(source, op, "qmp:test");
                    Assert.True(oracle == d.PolicyAllows, $"{domain} -> {vmType} {perm}: sesearch says {oracle}, csvmm {d.PolicyAllows} ({d.DenialReason})");
                    Assert.Equal(d.PolicyAllows, d.Allowed); // enforcing
                    if (d.PolicyAllows) granted++; else denied++;
                }
            }
        }
        // The policy tells the story its comments promise, so the table is not all one answer.
        Assert.True(granted >= 20 && denied >= 60, $"{granted} granted, {denied} denied");
        var staffOnSandbox = new ManagementGate(engine, EnforcementMode.Enforcing, s_vms["vm_sandbox_t"], new AvcOrigin(1, "csvmm"));
        Assert.True(staffOnSandbox.Check(s_domains["staff_t"], VmOperation.Control, "qmp:stop").PolicyAllows);
        Assert.False(staffOnSandbox.Check(s_domains["staff_t"], VmOperation.Save, "migrate").PolicyAllows);
        var guestOnOwn = new ManagementGate(engine, EnforcementMode.Enforcing, s_vms["vm_guest_t"], new AvcOrigin(1, "csvmm"));
        Assert.True(guestOnOwn.Check(s_domains["guest_t"], VmOperation.Query, "qmp:query-status").PolicyAllows);
        Assert.False(guestOnOwn.Check(s_domains["guest_t"], VmOperation.Control, "qmp:stop").PolicyAllows);
    }

    [Fact]
    public void Denials_are_enforced_only_in_enforcing_mode_and_name_the_missing_rule()
    {
        var engine = policy.Engine;
        string guest = s_domains["guest_t"], vm = s_vms["vm_guest_t"];
        var enforcing = new ManagementGate(engine, EnforcementMode.Enforcing, vm, new AvcOrigin(42, "csvmm"));
        var d = enforcing.Check(guest, VmOperation.Control, "qmp:stop");
        Assert.False(d.Allowed);
        Assert.Equal("no rule allow guest_t vm_guest_t:vm control", d.DenialReason);
        Assert.Equal($"avc:  denied  {{ control }} for  pid=42 comm=\"csvmm\" path=\"qmp:stop\" scontext={guest} tcontext={vm} tclass=vm permissive=0", d.AvcLine);

        var permissive = new ManagementGate(engine, EnforcementMode.Permissive, vm, new AvcOrigin(42, "csvmm"));
        var p = permissive.Check(guest, VmOperation.Control, "qmp:stop");
        Assert.False(p.PolicyAllows);
        Assert.True(p.Allowed);
        Assert.EndsWith("permissive=1", p.AvcLine);

        var granted = enforcing.Check(guest, VmOperation.Query, "qmp:query-status");
        Assert.True(granted.Allowed);
        Assert.StartsWith("avc:  granted  { query }", granted.AvcLine);

        var disabled = new ManagementGate(engine, EnforcementMode.Disabled, vm, new AvcOrigin(42, "csvmm"));
        var off = disabled.Check(guest, VmOperation.MigrateOut, "x");
        Assert.True(off.Allowed);
        Assert.Null(off.AvcLine);
    }

    [Fact]
    public void What_the_engine_cannot_decide_is_a_denial_in_enforcing_mode()
    {
        var engine = policy.Engine;
        var gate = new ManagementGate(engine, EnforcementMode.Enforcing, s_vms["vm_user_t"], new AvcOrigin(1, "csvmm"));
        var bad = gate.Check("nobody_u:nobody_r:nobody_t", VmOperation.Query, "qmp:query-status");
        Assert.False(bad.Allowed);
        Assert.NotNull(bad.DenialReason);

        var noVm = new UnavailablePolicyEngine("policy /x: cannot be read");
        var failing = new ManagementGate(noVm, EnforcementMode.Enforcing, s_vms["vm_user_t"], new AvcOrigin(1, "csvmm"));
        var f = failing.Check(s_domains["user_t"], VmOperation.Control, "qmp:stop");
        Assert.False(f.Allowed);
        Assert.Contains("cannot be read", f.DenialReason);
        var permissive = new ManagementGate(noVm, EnforcementMode.Permissive, s_vms["vm_user_t"], new AvcOrigin(1, "csvmm"));
        Assert.True(permissive.Check(s_domains["user_t"], VmOperation.Control, "qmp:stop").Allowed);
    }

    [Theory]
    [InlineData(VmOperation.Query, "query")]
    [InlineData(VmOperation.Control, "control")]
    [InlineData(VmOperation.Save, "save")]
    [InlineData(VmOperation.Restore, "restore")]
    [InlineData(VmOperation.MigrateOut, "migrate_out")]
    [InlineData(VmOperation.MigrateIn, "migrate_in")]
    public void Every_operation_is_a_permission_the_policy_declares(VmOperation op, string permission)
    {
        Assert.Equal(permission, ManagementGate.PermissionFor(op));
        var engine = policy.Engine;
        Assert.NotEqual(0u, engine.GetPermission(engine.GetClass("vm"), permission));
    }

    [GeneratedRegex(@"^allow (\S+) (\S+):vm (?:\{ ([^}]*) \}|(\S+));$", RegexOptions.Multiline)]
    private static partial Regex RuleLine();
}

/// <summary>A snapshot is a VM image: restoring one passes the three entrypoint questions, with its own file type.</summary>
[Collection(LibsepolCollection.Name)]
public sealed class SnapshotEntrypointTests(PolicyFixture policy)
{
    [Fact]
    public void A_snapshot_in_the_snapshot_directory_is_labelled_and_enters_the_users_vm_type()
    {
        var contexts = FileContexts.Load(policy.FileContextsPath);
        var label = contexts.Lookup("/var/lib/csvmm/snapshots/web.snap", FileKind.Regular);
        Assert.Equal("system_u:object_r:qemu_snapshot_t", label.Context);

        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, new AvcOrigin(1, "csvmm"));
        var user = gate.Check(StandalonePolicy.DefaultProcessContext, label);
        Assert.True(user.PolicyAllows, user.DenialReason);
        Assert.Equal("user_u:object_r:vm_user_t", user.VmContext);
        // The module grants snapshots to user_t only: staff_t and guest_t cannot restore them.
        Assert.False(gate.Check("staff_u:staff_r:staff_t", label).Allowed);
        Assert.False(gate.Check("guest_u:guest_r:guest_t", label).Allowed);
        // And the restored VM may be restored (and then managed) by its user.
        var management = new ManagementGate(policy.Engine, EnforcementMode.Enforcing, user.VmContext!, new AvcOrigin(1, "csvmm"));
        Assert.True(management.Check(StandalonePolicy.DefaultProcessContext, VmOperation.Restore, "incoming:/var/lib/csvmm/snapshots/web.snap").PolicyAllows);
    }

    private ManagementGate WriterGate(EnforcementMode mode, string process)
    {
        var contexts = FileContexts.Load(policy.FileContextsPath);
        return new ManagementGate(policy.Engine, mode, "user_u:object_r:vm_user_t", new AvcOrigin(1, "csvmm"), process,
            path => contexts.Lookup(path, FileKind.Regular));
    }

    [Fact]
    public void Csvmm_may_write_snapshots_where_file_contexts_labels_them_snapshots_and_nowhere_else()
    {
        var gate = WriterGate(EnforcementMode.Enforcing, StandalonePolicy.DefaultProcessContext);
        var ok = gate.CheckSnapshotWrite("/var/lib/csvmm/snapshots/web.snap");
        Assert.True(ok.PolicyAllows, ok.DenialReason);
        Assert.Contains("granted  { write } for", ok.AvcLine);
        Assert.Contains("tcontext=system_u:object_r:qemu_snapshot_t tclass=file", ok.AvcLine);

        // Over a trusted image: user_t may read it, never write it.
        var image = gate.CheckSnapshotWrite("/var/lib/csvmm/images/web.img");
        Assert.False(image.Allowed);
        Assert.Contains("no rule allow user_t qemu_virtdisk_t:file { write }", image.DenialReason);
        Assert.Contains("denied  { write }", image.AvcLine);

        // A path file_contexts does not label: denied, the reason says why.
        var nowhere = gate.CheckSnapshotWrite("/srv/elsewhere/web.snap");
        Assert.False(nowhere.Allowed);
        Assert.Contains("no SELinux label", nowhere.DenialReason);
        Assert.Null(nowhere.AvcLine);

        // guest_t has no write rule on snapshots.
        var guest = WriterGate(EnforcementMode.Enforcing, "guest_u:guest_r:guest_t").CheckSnapshotWrite("/var/lib/csvmm/snapshots/web.snap");
        Assert.False(guest.Allowed);
        Assert.Contains("guest_t qemu_snapshot_t:file { write }", guest.DenialReason);
    }

    [Fact]
    public async Task The_snapshot_write_decisions_match_sesearch()
    {
        var r = await Tool.RunAsync("sesearch", policy.PolicyPath, "-A", "-t", "qemu_snapshot_t", "-c", "file", "-p", "write");
        Assert.True(r.ExitCode == 0, r.StdErr);
        foreach (var (domain, context) in new Dictionary<string, string>
        {
            ["user_t"] = StandalonePolicy.DefaultProcessContext, ["staff_t"] = "staff_u:staff_r:staff_t", ["guest_t"] = "guest_u:guest_r:guest_t",
        })
        {
            bool oracle = Regex.IsMatch(r.StdOut, $@"^allow {domain} qemu_snapshot_t:file", RegexOptions.Multiline);
            bool csvmm = WriterGate(EnforcementMode.Enforcing, context).CheckSnapshotWrite("/var/lib/csvmm/snapshots/a.snap").PolicyAllows;
            Assert.True(oracle == csvmm, $"{domain}: sesearch {oracle}, csvmm {csvmm}");
        }
    }

    [Fact]
    public void Permissive_mode_logs_a_denied_snapshot_write_and_lets_it_go_on_and_the_kernel_decides_on_selinux_hosts()
    {
        var d = WriterGate(EnforcementMode.Permissive, StandalonePolicy.DefaultProcessContext).CheckSnapshotWrite("/var/lib/csvmm/images/x.img");
        Assert.False(d.PolicyAllows);
        Assert.True(d.Allowed);
        Assert.Contains("permissive=1", d.AvcLine);
        // No labeler (the kernel's policy: the kernel checks the open itself) and disabled checks answer yes, silently.
        var kernel = new ManagementGate(policy.Engine, EnforcementMode.Enforcing, "user_u:object_r:vm_user_t", new AvcOrigin(1, "csvmm"));
        Assert.Equal(new ManagementDecision(true, true, null, null), kernel.CheckSnapshotWrite("/var/lib/csvmm/images/x.img"));
        var disabled = WriterGate(EnforcementMode.Disabled, StandalonePolicy.DefaultProcessContext);
        Assert.Equal(new ManagementDecision(true, true, null, null), disabled.CheckSnapshotWrite("/var/lib/csvmm/images/x.img"));
    }
}
