using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>Every way the policy machinery can fail must end in a denial with a clear one-line reason.</summary>
[Collection(LibsepolCollection.Name)]
public sealed class FailClosedTests(PolicyFixture policy)
{
    private const string User = "user_u:user_r:user_t";
    private static readonly DiskLabel s_trustedDisk = DiskLabel.Labelled("/images/a.img", "system_u:object_r:qemu_virtdisk_t", "test");

    private static EntrypointDecision CheckWithLoadOf(string path, EnforcementMode mode = EnforcementMode.Enforcing)
    {
        IPolicyEngine engine;
        try
        {
            engine = SepolEngine.Load(path);
        }
        catch (SecurityPolicyException e)
        {
            Assert.Equal(PolicyErrorKind.PolicyUnavailable, e.Kind);
            engine = new UnavailablePolicyEngine(e.Message);
        }
        return new EntrypointGate(engine, mode, AvcOrigin.Current).Check(User, s_trustedDisk);
    }

    private static void AssertDenied(EntrypointDecision d, string reasonPart)
    {
        Assert.False(d.Allowed);
        Assert.False(d.PolicyAllows);
        Assert.True(d.Failed);
        Assert.Contains(reasonPart, d.DenialReason);
        Assert.DoesNotContain('\n', d.DenialReason!);
    }

    [Fact]
    public void Missing_policy_file_is_a_denial()
    {
        string missing = Path.Combine(policy.Directory, "no-such-policy.33");
        AssertDenied(CheckWithLoadOf(missing), $"cannot open SELinux policy {missing}: No such file or directory");
    }

    [Fact]
    public void Random_bytes_are_not_a_policy()
    {
        var bytes = new byte[4096];
        new Random(1234).NextBytes(bytes);
        string path = policy.TempFile("random.33", bytes);
        AssertDenied(CheckWithLoadOf(path), "is not a valid binary policy");
    }

    [Theory]
    [InlineData(64)]
    [InlineData(600)]
    [InlineData(1200)]
    public void Truncated_policy_is_refused_and_a_good_one_loads_again_afterwards(int length)
    {
        byte[] good = File.ReadAllBytes(policy.PolicyPath);
        Assert.True(good.Length > length);
        string path = policy.TempFile($"truncated{length}.33", good[..length]);
        var before = policy.Engine;

        AssertDenied(CheckWithLoadOf(path), "is not a valid binary policy");

        // libsepol discarded the previous policy when it started reading: the old engine is void...
        Assert.False(before.IsCurrent);
        var e = Assert.Throws<SecurityPolicyException>(() => before.GetClass("vm"));
        Assert.Equal(PolicyErrorKind.PolicyUnavailable, e.Kind);
        // ...and a fresh load works.
        Assert.True(policy.Engine.GetClass("vm").Value > 0);
    }

    [Fact]
    public void Empty_policy_file_is_refused()
    {
        AssertDenied(CheckWithLoadOf(policy.TempFile("empty.33", [])), "is empty");
    }

    [Fact]
    public void Policy_without_class_vm_is_a_denial_even_with_handle_unknown_allow()
    {
        var d = CheckWithLoadOf(policy.NoVmPolicyPath);
        AssertDenied(d, $"SELinux policy {policy.NoVmPolicyPath} has no class 'vm'");
        Assert.Null(d.VmContext);
    }

    [Fact]
    public void Permissive_mode_allows_but_still_reports_the_failure()
    {
        var d = CheckWithLoadOf(policy.NoVmPolicyPath, EnforcementMode.Permissive);
        Assert.True(d.Allowed);
        Assert.False(d.PolicyAllows);
        Assert.Contains("has no class 'vm'", d.DenialReason);
    }

    [Theory]
    [InlineData("user_u:staff_r:staff_t", "role not authorised")]             // role not authorised for the user
    [InlineData("user_u:user_r:staff_t", "role not authorised")]              // type not in the role
    [InlineData("user_u:user_r:nonexistent_t", "unknown user, role or type")]
    [InlineData("nobody_u:user_r:user_t", "unknown user, role or type")]
    [InlineData("user_u:user_r:user_t:s0", "an MLS level the policy does not have")] // MLS level, policy without MLS
    [InlineData("garbage", "expected user:role:type[:level]")]
    [InlineData("user_u:user_r:user_t extra", "whitespace")]
    [InlineData("", "empty")]
    public void Invalid_process_context_is_a_denial(string context, string reasonPart)
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        var d = gate.Check(context, s_trustedDisk);
        Assert.True(d.Failed);
        Assert.False(d.Allowed);
        Assert.Contains("invalid security context", d.DenialReason);
        Assert.Contains(reasonPart, d.DenialReason);
        Assert.Empty(d.AvcLines);
    }

    [Theory]
    [InlineData("system_u:object_r:no_such_disk_t")]
    [InlineData("system_u:object_r:qemu_virtdisk_t:s0")]
    [InlineData("system_u:system_r:qemu_virtdisk_t")]
    public void Invalid_disk_context_is_a_denial(string context)
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        var d = gate.Check(User, DiskLabel.Labelled("/x.img", context, "test"));
        Assert.True(d.Failed);
        Assert.False(d.Allowed);
        Assert.Contains($"invalid security context '{context}'", d.DenialReason);
    }

    [Fact]
    public void Unlabelled_disk_is_a_denial_without_asking_the_policy()
    {
        var gate = new EntrypointGate(policy.Engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        var d = gate.Check(User, DiskLabel.Unlabelled("/x.img", "fc", "no line of fc matches /x.img"));
        Assert.True(d.Failed);
        Assert.False(d.Allowed);
        Assert.Equal("no line of fc matches /x.img", d.DenialReason);
        Assert.Equal(CheckState.NotEvaluated, d.FileRead.State);
    }

    [Fact]
    public void Stale_and_foreign_sids_are_refused_rather_than_remapped()
    {
        var first = SepolEngine.Load(policy.PolicyPath);
        SecurityId user = first.GetSid(User);
        var second = SepolEngine.Load(policy.PolicyPath);

        Assert.False(first.IsCurrent);
        Assert.Equal(PolicyErrorKind.PolicyUnavailable, Assert.Throws<SecurityPolicyException>(() => first.GetContext(user)).Kind);
        // The same number in the new load names some other context (or nothing): refuse it.
        Assert.Equal(PolicyErrorKind.InvalidSid, Assert.Throws<SecurityPolicyException>(() => second.GetContext(user)).Kind);
        // A SID never issued (libsepol itself would silently answer for the "unlabeled" SID).
        SecurityId disk = second.GetSid("system_u:object_r:qemu_virtdisk_t");
        Assert.Equal(PolicyErrorKind.InvalidSid, Assert.Throws<SecurityPolicyException>(
            () => second.ComputeAccess(disk with { Value = 999 }, disk, second.GetClass("file"), 1)).Kind);
        // A class resolved under the old load.
        var oldClass = new SecurityClass("file", 1, disk.Epoch - 1);
        Assert.Equal(PolicyErrorKind.UnknownClass, Assert.Throws<SecurityPolicyException>(
            () => second.ComputeAccess(disk, disk, oldClass, 1)).Kind);
    }

    [Fact]
    public void Unknown_permission_is_an_error_not_a_zero_bit()
    {
        var engine = policy.Engine;
        var vm = engine.GetClass("vm");
        var e = Assert.Throws<SecurityPolicyException>(() => engine.GetPermission(vm, "transition"));
        Assert.Equal(PolicyErrorKind.UnknownPermission, e.Kind);
        Assert.Contains("class vm", e.Message);
    }

    [Fact]
    public void Permission_bits_are_the_policys_own()
    {
        var engine = policy.Engine;
        var vm = engine.GetClass("vm");
        var file = engine.GetClass("file");
        // class vm { entrypoint save restore migrate_out migrate_in control query }: bits in declaration order.
        Assert.Equal([1u, 2u, 4u, 8u, 16u, 32u, 64u],
            new[] { "entrypoint", "save", "restore", "migrate_out", "migrate_in", "control", "query" }.Select(p => engine.GetPermission(vm, p)));
        // class file (getattr open read write) in base.cil.
        Assert.Equal([1u, 2u, 4u], new[] { "getattr", "open", "read" }.Select(p => engine.GetPermission(file, p)));
    }

    [Fact]
    public void Constraint_denial_carries_libseopls_explanation()
    {
        var engine = SepolEngine.Load(policy.ConstrainedPolicyPath);
        var gate = new EntrypointGate(engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        var d = gate.Check(User, s_trustedDisk);
        Assert.False(d.Failed);
        Assert.False(d.FileRead.Granted);
        Assert.True(d.TypeChange.Granted);
        Assert.True(d.Entrypoint.Granted);
        Assert.StartsWith("file read denied: denied by a constraint: ", d.DenialReason);
        Assert.Contains("u1", d.DenialReason);
        Assert.Contains("{ read }", d.FileRead.AvcLine);
        // The engine reports the cause, not just the bits.
        var read = engine.GetPermission(engine.GetClass("file"), "read");
        var avd = engine.ComputeAccess(engine.GetSid(User), engine.GetSid(s_trustedDisk.Context!), engine.GetClass("file"), read);
        Assert.Equal(DenialCauses.Constraint, avd.Causes);
        Assert.False(avd.Grants(read));
    }

    [Fact]
    public void World_writable_or_foreign_owned_policy_is_refused_when_root_ownership_is_required()
    {
        string path = policy.TempFile("writable.33", File.ReadAllBytes(policy.PolicyPath));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite);
        var e = Assert.Throws<SecurityPolicyException>(() => SepolEngine.Load(path, FileTrust.RootOwned));
        Assert.Contains("writable by group or others", e.Message);

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        if (Environment.UserName == "root")
        {
            Tool.RunChecked("chown", "65534", path);
            e = Assert.Throws<SecurityPolicyException>(() => SepolEngine.Load(path, FileTrust.RootOwned));
            Assert.Contains("owned by uid 65534, not root", e.Message);
            Tool.RunChecked("chown", "0", path);
            Assert.True(SepolEngine.Load(path, FileTrust.RootOwned).IsCurrent);
        }
        Assert.True(SepolEngine.Load(path, FileTrust.Any).IsCurrent);
    }

    [Fact]
    public void Directory_is_not_a_policy()
    {
        var e = Assert.Throws<SecurityPolicyException>(() => SepolEngine.Load(policy.Directory));
        Assert.Contains("not a regular file", e.Message);
    }
}
