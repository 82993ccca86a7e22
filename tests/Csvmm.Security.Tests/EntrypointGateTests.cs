using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>The gate's decision logic over an in-memory policy: table-driven, no libsepol.</summary>
public sealed class EntrypointGateTests
{
    private const string Process = "user_u:user_r:user_t";
    private const string DiskContext = "system_u:object_r:qemu_virtdisk_t";
    private static readonly AvcOrigin s_origin = new(4242, "csvmm");
    private static readonly DiskLabel s_disk = DiskLabel.Labelled("/var/lib/csvmm/images/a.img", DiskContext, "test");

    private static FakePolicyEngine Policy(bool read, bool typeChange, bool entrypoint)
    {
        var p = new FakePolicyEngine();
        if (read) p.Allow("user_t", "qemu_virtdisk_t", "file", "read", "open", "getattr");
        if (typeChange) p.TypeChange("user_t", "qemu_virtdisk_t", "vm_user_t");
        // The entrypoint rule targets the VM type the disk leads to: vm_user_t, or the disk's own type without type_change.
        if (entrypoint) p.Allow("qemu_virtdisk_t", typeChange ? "vm_user_t" : "qemu_virtdisk_t", "vm", "entrypoint");
        return p;
    }

    [Theory]
    //          read   change entry  mode                          policyAllows allowed
    [InlineData(true,  true,  true,  EnforcementMode.Enforcing,  true,  true)]
    [InlineData(false, true,  true,  EnforcementMode.Enforcing,  false, false)]
    [InlineData(true,  false, true,  EnforcementMode.Enforcing,  false, false)] // entrypoint into the disk's own type does not help
    [InlineData(true,  true,  false, EnforcementMode.Enforcing,  false, false)]
    [InlineData(false, false, false, EnforcementMode.Enforcing,  false, false)]
    [InlineData(true,  true,  true,  EnforcementMode.Permissive, true,  true)]
    [InlineData(false, true,  true,  EnforcementMode.Permissive, false, true)]
    [InlineData(true,  false, true,  EnforcementMode.Permissive, false, true)]
    [InlineData(true,  true,  false, EnforcementMode.Permissive, false, true)]
    public void Three_answers_and_the_verdict(bool read, bool typeChange, bool entrypoint, EnforcementMode mode,
        bool policyAllows, bool allowed)
    {
        var gate = new EntrypointGate(Policy(read, typeChange, entrypoint), mode, s_origin);

        var d = gate.Check(Process, s_disk);

        Assert.False(d.Failed);
        Assert.Equal(read, d.FileRead.Granted);
        Assert.Equal(typeChange, d.TypeChange.Granted);
        Assert.Equal(entrypoint, d.Entrypoint.Granted);
        Assert.Equal(typeChange ? "user_u:object_r:vm_user_t" : "user_u:object_r:qemu_virtdisk_t", d.VmContext);
        Assert.Equal(policyAllows, d.PolicyAllows);
        Assert.Equal(allowed, d.Allowed);
        Assert.Equal(policyAllows, d.DenialReason is null);
        Assert.Equal(3, d.AvcLines.Count());
        string permissive = mode == EnforcementMode.Permissive ? "permissive=1" : "permissive=0";
        Assert.All(d.AvcLines, l => Assert.EndsWith(permissive, l));
        Assert.StartsWith(read ? "avc:  granted  { read open getattr }" : "avc:  denied  { read open getattr }", d.FileRead.AvcLine);
        Assert.StartsWith(entrypoint ? "avc:  granted  { entrypoint }" : "avc:  denied  { entrypoint }", d.Entrypoint.AvcLine);
        if (!typeChange)
            Assert.Contains("no type_change rule: type_change user_t qemu_virtdisk_t:vm <vm type> is missing", d.DenialReason);
    }

    [Fact]
    public void Denied_line_lists_only_the_missing_permissions()
    {
        var p = Policy(false, true, true).Allow("user_t", "qemu_virtdisk_t", "file", "getattr", "open");
        var d = new EntrypointGate(p, EnforcementMode.Enforcing, s_origin).Check(Process, s_disk);
        Assert.Equal(
            "avc:  denied  { read } for  pid=4242 comm=\"csvmm\" path=\"/var/lib/csvmm/images/a.img\" " +
            "scontext=user_u:user_r:user_t tcontext=system_u:object_r:qemu_virtdisk_t tclass=file permissive=0", d.FileRead.AvcLine);
        Assert.Equal("file read denied: no rule allow user_t qemu_virtdisk_t:file { read }", d.DenialReason);
    }

    [Fact]
    public void Constraint_denial_reports_the_constraint()
    {
        var p = Policy(false, true, true);
        p.DenialCauses = DenialCauses.Constraint;
        var d = new EntrypointGate(p, EnforcementMode.Enforcing, s_origin).Check(Process, s_disk);
        Assert.Equal("file read denied: denied by a constraint: constraint (u1 == u2)", d.DenialReason);
    }

    [Fact]
    public void Disabled_mode_does_not_consult_the_policy()
    {
        var p = Policy(false, false, false);
        var d = new EntrypointGate(p, EnforcementMode.Disabled, s_origin).Check(Process, s_disk);
        Assert.True(d.Allowed);
        Assert.False(d.PolicyAllows);
        Assert.Null(d.DenialReason);
        Assert.Empty(d.AvcLines);
        Assert.Equal(0, p.Calls);
        Assert.Contains("verdict:    not checked (SELinux checks disabled)", d.Describe());
    }

    public static TheoryData<string, PolicyErrorKind> EngineFailures => new()
    {
        { "SELinux policy /p has no class 'vm'", PolicyErrorKind.UnknownClass },
        { "cannot open SELinux policy /p: No such file or directory", PolicyErrorKind.PolicyUnavailable },
        { "invalid security context 'x'", PolicyErrorKind.InvalidContext },
        { "libsepol cannot compute access", PolicyErrorKind.ComputationFailed },
    };

    [Theory]
    [MemberData(nameof(EngineFailures))]
    public void Every_engine_failure_is_a_denial_with_its_message(string message, PolicyErrorKind kind)
    {
        var p = Policy(true, true, true);
        p.FailWith = new SecurityPolicyException(kind, message);
        var enforcing = new EntrypointGate(p, EnforcementMode.Enforcing, s_origin).Check(Process, s_disk);
        Assert.False(enforcing.Allowed);
        Assert.True(enforcing.Failed);
        Assert.Equal(message, enforcing.DenialReason);
        Assert.Empty(enforcing.AvcLines);

        var permissive = new EntrypointGate(p, EnforcementMode.Permissive, s_origin).Check(Process, s_disk);
        Assert.True(permissive.Allowed);
        Assert.False(permissive.PolicyAllows);
        Assert.Equal(message, permissive.DenialReason);
    }

    [Fact]
    public void Missing_vm_class_denies()
    {
        var p = Policy(true, true, true).WithoutClass("vm");
        var d = new EntrypointGate(p, EnforcementMode.Enforcing, s_origin).Check(Process, s_disk);
        Assert.False(d.Allowed);
        Assert.Equal("fake policy has no class 'vm'", d.DenialReason);
    }

    [Fact]
    public void Unavailable_engine_denies_with_the_load_error()
    {
        var gate = new EntrypointGate(new UnavailablePolicyEngine("cannot open SELinux policy /x: Permission denied"),
            EnforcementMode.Enforcing, s_origin);
        var d = gate.Check(Process, s_disk);
        Assert.False(d.Allowed);
        Assert.Equal("cannot open SELinux policy /x: Permission denied", d.DenialReason);
    }

    [Fact]
    public void Unlabelled_disk_denies_in_enforcing_and_is_reported_in_permissive()
    {
        var unlabelled = DiskLabel.Unlabelled("/tmp/x.img", "/etc/csvmm/file_contexts", "no line of /etc/csvmm/file_contexts matches /tmp/x.img");
        var p = Policy(true, true, true);
        var d = new EntrypointGate(p, EnforcementMode.Enforcing, s_origin).Check(Process, unlabelled);
        Assert.False(d.Allowed);
        Assert.True(d.Failed);
        Assert.Equal("no line of /etc/csvmm/file_contexts matches /tmp/x.img", d.DenialReason);
        Assert.Equal(0, p.Calls);
        Assert.True(new EntrypointGate(p, EnforcementMode.Permissive, s_origin).Check(Process, unlabelled).Allowed);
    }

    [Fact]
    public void Hostile_path_cannot_forge_avc_fields()
    {
        var disk = DiskLabel.Labelled("/img/a\" tclass=file permissive=1\n.img", DiskContext, "test");
        var d = new EntrypointGate(Policy(true, true, true), EnforcementMode.Enforcing, s_origin).Check(Process, disk);
        string line = d.Entrypoint.AvcLine!;
        Assert.DoesNotContain('\n', line);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(line, "permissive="));
        Assert.Contains(" path=" + Convert.ToHexString(System.Text.Encoding.UTF8.GetBytes(disk.Path)) + " ", line);
    }

    public static TheoryData<string[], bool, string?> Combinations => new()
    {
        // per-disk VM contexts (null entry: a denied disk), combined policy verdict, reason start
        { [], true, null },
        { ["u:object_r:vm_a_t"], true, null },
        { ["u:object_r:vm_a_t", "u:object_r:vm_a_t"], true, null },
        { ["u:object_r:vm_a_t", "u:object_r:vm_b_t"], false, "disks disagree on the VM context: /d0 -> u:object_r:vm_a_t; /d1 -> u:object_r:vm_b_t" },
        { ["u:object_r:vm_a_t", null!], false, "disk /d1: denied here" },
        { [null!, null!, null!], false, "disk /d0: denied here (and 2 more denied disks)" },
    };

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Combine_requires_every_disk_and_one_vm_context(string[] vmContexts, bool policyAllows, string? reason)
    {
        foreach (var mode in new[] { EnforcementMode.Enforcing, EnforcementMode.Permissive })
        {
            var gate = new EntrypointGate(new FakePolicyEngine(), mode, s_origin);
            var disks = vmContexts.Select((vm, i) => new EntrypointDecision
            {
                DiskPath = $"/d{i}", ProcessContext = Process, Mode = mode, VmContext = vm,
                PolicyAllows = vm is not null, DenialReason = vm is null ? "denied here" : null,
            }).ToList();

            var result = gate.Combine(disks);

            Assert.Equal(policyAllows, result.PolicyAllows);
            Assert.Equal(policyAllows || mode == EnforcementMode.Permissive, result.Allowed);
            Assert.Equal(reason, result.DenialReason);
            Assert.Equal(policyAllows && vmContexts.Length > 0 ? vmContexts[0] : null, result.VmContext);
        }
    }

    [Fact]
    public void Describe_reports_the_three_answers()
    {
        var d = new EntrypointGate(Policy(true, true, false), EnforcementMode.Permissive, s_origin).Check(Process, s_disk);
        Assert.Equal(
        [
            "disk:       /var/lib/csvmm/images/a.img",
            "label:      system_u:object_r:qemu_virtdisk_t",
            "process:    user_u:user_r:user_t",
            "file read:  granted",
            "vm context: user_u:object_r:vm_user_t",
            "entrypoint: DENIED: no rule allow qemu_virtdisk_t vm_user_t:vm entrypoint",
            "verdict:    denied (permissive, not enforced): entrypoint denied: no rule allow qemu_virtdisk_t vm_user_t:vm entrypoint",
        ], d.Describe());
    }
}
