using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>
/// The decision table of the standalone policy: for every (process type, disk type) pair,
/// csvmm's three answers (libsepol through SepolEngine and EntrypointGate) must equal what
/// setools' sesearch reports for the same compiled policy, and the policy must tell the story
/// its comments promise.
/// </summary>
[Collection(LibsepolCollection.Name)]
public sealed class DecisionTableTests(PolicyFixture policy)
{
    // Process domains with the context they run in, and disk types (files are system_u:object_r:<type>).
    private static readonly Dictionary<string, string> s_processContexts = new()
    {
        ["user_t"] = StandalonePolicy.DefaultProcessContext,
        ["staff_t"] = "staff_u:staff_r:staff_t",
        ["guest_t"] = "guest_u:guest_r:guest_t",
        ["kernel_t"] = "system_u:system_r:kernel_t",
    };
    private static readonly string[] s_diskTypes = ["qemu_virtdisk_t", "untrusted_disk_t", "qemu_snapshot_t"];
    private static readonly string[] s_vmTypes = ["vm_user_t", "vm_staff_t", "vm_sandbox_t", "vm_guest_t"];

    private static readonly object s_oracleLock = new();
    private static Task<SesearchOracle>? s_oracle;

    private Task<SesearchOracle> Oracle()
    {
        lock (s_oracleLock)
            return s_oracle ??= Task.Run(() => SesearchOracle.QueryAsync(policy.PolicyPath, s_processContexts.Keys.ToList(), s_diskTypes));
    }

    /// <summary>process type, disk type, may read, VM type (null: no type_change), entrypoint granted.</summary>
    public static TheoryData<string, string, bool, string?, bool> Table => new()
    {
        { "user_t",   "qemu_virtdisk_t",  true,  "vm_user_t",    true  },  // the RFC's example: allowed
        { "user_t",   "untrusted_disk_t", true,  "vm_user_t",    false },  // no entrypoint
        { "staff_t",  "qemu_virtdisk_t",  true,  "vm_staff_t",   true  },  // allowed
        { "staff_t",  "untrusted_disk_t", true,  "vm_sandbox_t", true  },  // allowed, other VM type
        { "guest_t",  "qemu_virtdisk_t",  false, "vm_guest_t",   true  },  // may not read the file
        { "guest_t",  "untrusted_disk_t", true,  null,           false },  // no type_change rule
        { "kernel_t", "qemu_virtdisk_t",  false, null,           false },  // nothing
        { "kernel_t", "untrusted_disk_t", false, null,           false },  // nothing
        // Snapshots are VM images too (restore): only user_t has the three rules.
        { "user_t",   "qemu_snapshot_t",  true,  "vm_user_t",    true  },
        { "staff_t",  "qemu_snapshot_t",  false, null,           false },
        { "guest_t",  "qemu_snapshot_t",  false, null,           false },
        { "kernel_t", "qemu_snapshot_t",  false, null,           false },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public async Task Csvmm_answers_equal_sesearch_and_the_documented_table(
        string processType, string diskType, bool read, string? vmType, bool entrypoint)
    {
        var oracle = (await Oracle()).Answers[(processType, diskType)];
        string diskContext = $"system_u:object_r:{diskType}";
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, new AvcOrigin(42, "csvmm"));

        var decision = gate.Check(s_processContexts[processType], DiskLabel.Labelled("/images/disk.img", diskContext, "test"));

        Assert.False(decision.Failed, decision.DenialReason);
        // csvmm == sesearch
        Assert.Equal(oracle.FileRead, decision.FileRead.Granted);
        Assert.Equal(oracle.VmType is not null, decision.TypeChange.Granted);
        Assert.Equal(oracle.VmType ?? diskType, SecurityContext.Parse(decision.VmContext!).Type);
        Assert.Equal(oracle.Entrypoint, decision.Entrypoint.Granted);
        // == the table the policy documents (so the oracle cannot agree with a broken policy unnoticed)
        Assert.Equal((read, vmType, entrypoint), (oracle.FileRead, oracle.VmType, oracle.Entrypoint));
        Assert.Equal(read && vmType is not null && entrypoint, decision.PolicyAllows);
        Assert.Equal(decision.PolicyAllows, decision.Allowed);
        Assert.Equal(decision.PolicyAllows, decision.DenialReason is null);
        // The VM context: the process's user, object_r (vm is not the process class), the VM type.
        Assert.Equal($"{SecurityContext.Parse(s_processContexts[processType]).User}:object_r:{vmType ?? diskType}", decision.VmContext);
    }

    [Fact]
    public async Task Table_covers_every_type_of_the_policy()
    {
        var oracle = await Oracle();
        Assert.Equal(s_processContexts.Keys.Order(StringComparer.Ordinal), oracle.RoleTypes.Order(StringComparer.Ordinal));
        Assert.Equal(s_processContexts.Keys.Concat(s_diskTypes).Concat(s_vmTypes).Order(StringComparer.Ordinal), oracle.AllTypes.Order(StringComparer.Ordinal));
        var rows = Table.Select(r => ((string)r[0], (string)r[1])).ToHashSet();
        Assert.Equal(s_processContexts.Count * s_diskTypes.Length, rows.Count);
        Assert.All(oracle.Answers.Keys, k => Assert.Contains(k, rows));
    }

    [Fact]
    public void Denials_name_the_missing_rule()
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, new AvcOrigin(7, "csvmm"));
        EntrypointDecision Check(string process, string disk) =>
            gate.Check(s_processContexts[process], DiskLabel.Labelled("/d.img", $"system_u:object_r:{disk}", "test"));

        Assert.Equal("file read denied: no rule allow guest_t qemu_virtdisk_t:file { read open getattr }",
            Check("guest_t", "qemu_virtdisk_t").DenialReason);
        Assert.Equal("entrypoint denied: no rule allow untrusted_disk_t vm_user_t:vm entrypoint",
            Check("user_t", "untrusted_disk_t").DenialReason);
        var noChange = Check("guest_t", "untrusted_disk_t");
        Assert.StartsWith("no type_change rule: type_change guest_t untrusted_disk_t:vm <vm type> is missing; entrypoint denied",
            noChange.DenialReason);
        Assert.Equal(
            "avc:  denied  { type_change } for  pid=7 comm=\"csvmm\" path=\"/d.img\" scontext=guest_u:guest_r:guest_t " +
            "tcontext=system_u:object_r:untrusted_disk_t tclass=vm permissive=0", noChange.TypeChange.AvcLine);
    }

    [Fact]
    public void Allowed_disk_logs_three_granted_lines()
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, new AvcOrigin(1234, "csvmm"));
        var d = gate.Check("user_u:user_r:user_t", DiskLabel.Labelled("/var/lib/csvmm/images/a.img", "system_u:object_r:qemu_virtdisk_t", "t"));
        Assert.Equal(
        [
            "avc:  granted  { read open getattr } for  pid=1234 comm=\"csvmm\" path=\"/var/lib/csvmm/images/a.img\" " +
                "scontext=user_u:user_r:user_t tcontext=system_u:object_r:qemu_virtdisk_t tclass=file permissive=0",
            "avc:  granted  { type_change } for  pid=1234 comm=\"csvmm\" path=\"/var/lib/csvmm/images/a.img\" " +
                "scontext=user_u:user_r:user_t tcontext=system_u:object_r:qemu_virtdisk_t tclass=vm permissive=0",
            "avc:  granted  { entrypoint } for  pid=1234 comm=\"csvmm\" path=\"/var/lib/csvmm/images/a.img\" " +
                "scontext=system_u:object_r:qemu_virtdisk_t tcontext=user_u:object_r:vm_user_t tclass=vm permissive=0",
        ], d.AvcLines);
    }

    [Fact]
    public void Disks_leading_to_different_vm_types_are_a_conflict()
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        var trusted = gate.Check("staff_u:staff_r:staff_t", DiskLabel.Labelled("/a.img", "system_u:object_r:qemu_virtdisk_t", "t"));
        var untrusted = gate.Check("staff_u:staff_r:staff_t", DiskLabel.Labelled("/b.img", "system_u:object_r:untrusted_disk_t", "t"));
        Assert.True(trusted.PolicyAllows);
        Assert.True(untrusted.PolicyAllows);

        var vm = gate.Combine([trusted, untrusted]);

        Assert.False(vm.Allowed);
        Assert.Null(vm.VmContext);
        Assert.Equal("disks disagree on the VM context: /a.img -> staff_u:object_r:vm_staff_t; /b.img -> staff_u:object_r:vm_sandbox_t",
            vm.DenialReason);
        var same = gate.Combine([trusted, trusted with { DiskPath = "/c.img" }]);
        Assert.True(same.Allowed);
        Assert.Equal("staff_u:object_r:vm_staff_t", same.VmContext);
    }
}
