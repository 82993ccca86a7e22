using Csvmm.Block;
using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>
/// <see cref="DiskGate"/>'s plan (pure): which engine and mode for which host, and what --selinux changes.
/// </summary>
public class DiskGatePlanTests
{
    private static SelinuxHostState Enabled(bool? enforcing) =>
        new(HostSelinux.Enabled, enforcing, "user_u:user_r:user_t", "is_selinux_enabled() = 1, test host");

    internal static readonly SelinuxHostState Absent =
        new(HostSelinux.Absent, null, null, "is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux)");

    [Theory]
    [InlineData(null, HostSelinux.Absent, EnforcementMode.Permissive)]
    [InlineData(EnforcementMode.Enforcing, HostSelinux.Absent, EnforcementMode.Enforcing)]
    [InlineData(EnforcementMode.Permissive, HostSelinux.Absent, EnforcementMode.Permissive)]
    [InlineData(EnforcementMode.Disabled, HostSelinux.Absent, EnforcementMode.Disabled)]
    [InlineData(null, HostSelinux.Enabled, EnforcementMode.Enforcing)]
    [InlineData(EnforcementMode.Enforcing, HostSelinux.Enabled, EnforcementMode.Enforcing)]
    [InlineData(EnforcementMode.Permissive, HostSelinux.Enabled, EnforcementMode.Permissive)]
    [InlineData(EnforcementMode.Disabled, HostSelinux.Enabled, EnforcementMode.Disabled)]
    public void Plan_follows_the_host(EnforcementMode? requested, HostSelinux host, EnforcementMode mode)
    {
        GatePlan plan = DiskGate.PlanFor(requested, host, "test host");
        Assert.Equal(mode, plan.Mode);
        Assert.Null(plan.Refusal);
    }

    [Theory]
    [InlineData(null, true, EnforcementMode.Enforcing, "the kernel's mode")]
    [InlineData(null, false, EnforcementMode.Permissive, "the kernel's mode")]
    [InlineData(null, null, EnforcementMode.Enforcing, "security_getenforce() failed: enforcing, fail closed")]
    [InlineData(EnforcementMode.Permissive, true, EnforcementMode.Permissive, "--selinux permissive")]
    [InlineData(EnforcementMode.Enforcing, false, EnforcementMode.Enforcing, "--selinux enforcing")]
    public void Selinux_host_decides_with_libselinux_in_the_kernels_mode(EnforcementMode? requested, bool? kernelEnforcing, EnforcementMode mode, string why)
    {
        GatePlan plan = DiskGate.PlanFor(requested, Enabled(kernelEnforcing));
        Assert.Equal(mode, plan.Mode);
        Assert.Null(plan.Refusal);
        Assert.True(plan.KernelPolicy);
        Assert.Contains("deciding with the kernel's policy (libselinux)", plan.Explanation);
        Assert.EndsWith($"({why})", plan.Explanation);
    }

    [Fact]
    public void Host_without_selinux_decides_with_libsepol()
    {
        GatePlan plan = DiskGate.PlanFor(null, Absent);
        Assert.Equal(EnforcementMode.Permissive, plan.Mode);
        Assert.False(plan.KernelPolicy);
        Assert.StartsWith("is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux); deciding with the standalone policy (libsepol) in permissive mode",
            plan.Explanation);
        Assert.Equal(EnforcementMode.Disabled, DiskGate.PlanFor(EnforcementMode.Disabled, Enabled(true)).Mode);
    }

    [Fact]
    public void This_host_has_no_selinux_and_says_so()
    {
        // The project's machines have no SELinux in the kernel; the gate must say so (both probes).
        if (Directory.Exists(SelinuxHost.SelinuxFs))
            return;
        var (state, detail) = SelinuxHost.Detect();
        Assert.Equal(HostSelinux.Absent, state);
        Assert.Contains("no /sys/fs/selinux", detail);
        SelinuxHostState s = SelinuxHost.Probe();
        Assert.Equal(HostSelinux.Absent, s.State);
        Assert.StartsWith("is_selinux_enabled() = 0: no SELinux in this kernel", s.Explanation);
    }

    [Fact]
    public void Options_default_beside_the_executable()
    {
        SecurityOptions o = SecurityOptions.Default;
        Assert.Null(o.Mode);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "policy", "policy.33"), o.PolicyPath);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "policy", "file_contexts"), o.FileContextsPath);
        Assert.Equal(StandalonePolicy.DefaultProcessContext, o.ProcessContext);
        Assert.True(o.UseHostContext);
        Assert.False(o.TrustXattr);
        Assert.False(o.Transition);
    }
}

/// <summary>
/// <see cref="DiskGate.Admit"/> on real files with the compiled standalone policy (libsepol): it admits disks, as
/// <see cref="AdmittedDisk"/> tokens, only when the VM may run, and <see cref="DiskOpener"/> opens exactly the file the
/// gate checked. <c>ok*.img</c> are qemu_virtdisk_t (user_t may boot them into vm_user_t); <c>bad*.img</c> are
/// untrusted_disk_t (no entrypoint).
/// </summary>
[Collection(LibsepolCollection.Name)]
public sealed class DiskGateAdmitTests : IDisposable
{
    private readonly PolicyFixture _policy;
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-gate-").FullName;
    private readonly string _fileContexts;

    public DiskGateAdmitTests(PolicyFixture policy)
    {
        _policy = policy;
        _fileContexts = Path.Combine(_dir, "file_contexts");
        string dir = _dir.Replace(".", "\\.", StringComparison.Ordinal);
        File.WriteAllText(_fileContexts,
            $"{dir}/ok[^/]*\\.img     --  system_u:object_r:qemu_virtdisk_t\n" +
            $"{dir}/bad[^/]*\\.img    --  system_u:object_r:untrusted_disk_t\n");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private SecurityOptions Options(EnforcementMode mode) =>
        new(mode, _policy.PolicyPath, _fileContexts, StandalonePolicy.DefaultProcessContext, TrustXattr: false);

    private static DiskGate Gate(SecurityOptions options) => new(options, Serilog.Core.Logger.None, DiskGatePlanTests.Absent);

    private string Disk(string name, byte fill = 0)
    {
        string p = Path.Combine(_dir, name);
        var data = new byte[1 << 20];
        Array.Fill(data, fill);
        File.WriteAllBytes(p, data);
        return p;
    }

    [Fact]
    public void Allowed_disks_are_admitted_in_order_with_the_vm_context()
    {
        using GateOutcome outcome = Gate(Options(EnforcementMode.Enforcing)).Admit([Disk("ok1.img"), Disk("ok2.img")]);
        Assert.Null(outcome.Refusal);
        Assert.Equal(2, outcome.Disks.Count);
        Assert.Equal(Path.Combine(_dir, "ok1.img"), outcome.Disks[0].GivenPath);
        Assert.Equal(Path.Combine(_dir, "ok2.img"), outcome.Disks[1].GivenPath);
        Assert.True(outcome.Decision!.PolicyAllows);
        Assert.Equal("user_u:object_r:vm_user_t", outcome.Decision.VmContext);
        Assert.Equal(StandalonePolicy.DefaultProcessContext, outcome.ProcessContext);
    }

    [Fact]
    public void Enforcing_denial_admits_nothing()
    {
        using GateOutcome outcome = Gate(Options(EnforcementMode.Enforcing)).Admit([Disk("ok.img"), Disk("bad.img")]);
        Assert.Empty(outcome.Disks); // not even the allowed one: the VM does not run
        Assert.NotNull(outcome.Refusal);
        Assert.Contains("entrypoint", outcome.Refusal);
        Assert.False(outcome.Decision!.Allowed);
    }

    [Fact]
    public void Permissive_denial_admits_the_disks_and_records_the_denial()
    {
        using GateOutcome outcome = Gate(Options(EnforcementMode.Permissive)).Admit([Disk("bad.img")]);
        Assert.Null(outcome.Refusal);
        Assert.Single(outcome.Disks);
        Assert.True(outcome.Decision!.Allowed);
        Assert.False(outcome.Decision.PolicyAllows);
    }

    [Fact]
    public void Disabled_mode_admits_without_consulting_any_policy()
    {
        var options = Options(EnforcementMode.Disabled) with { PolicyPath = Path.Combine(_dir, "missing.33") };
        using GateOutcome outcome = Gate(options).Admit([Disk("bad.img")]);
        Assert.Null(outcome.Refusal);
        Assert.Null(outcome.Decision);
        Assert.Single(outcome.Disks);
    }

    [Theory]
    [InlineData("missing.img", "No such file or directory")]
    [InlineData("", "disk path is empty")]
    public void A_path_that_cannot_be_a_disk_is_a_disk_error_in_every_mode(string name, string fragment)
    {
        string path = name.Length == 0 ? "" : Path.Combine(_dir, name);
        foreach (var mode in new[] { EnforcementMode.Enforcing, EnforcementMode.Permissive, EnforcementMode.Disabled })
        {
            var e = Assert.Throws<DiskException>(() => Gate(Options(mode)).Admit([path]));
            Assert.Contains(fragment, e.Message);
        }
    }

    [Fact]
    public void A_directory_is_refused_before_any_decision()
    {
        string sub = Directory.CreateDirectory(Path.Combine(_dir, "ok.img")).FullName;
        var e = Assert.Throws<DiskException>(() => Gate(Options(EnforcementMode.Enforcing)).Admit([sub]));
        Assert.Contains("directory", e.Message);
    }

    [Fact]
    public void The_opener_opens_the_file_the_gate_checked_even_if_the_path_is_swapped()
    {
        string ok = Disk("ok.img", fill: 0xAA);
        using GateOutcome outcome = Gate(Options(EnforcementMode.Enforcing)).Admit([ok]);
        Assert.Single(outcome.Disks);
        // After the decision the path is replaced by another file: the admitted token still leads to the checked one.
        File.Move(ok, Path.Combine(_dir, "ok-moved.img"));
        Disk("ok.img", fill: 0x55);
        using RawDisk disk = DiskOpener.Open(outcome.Disks[0], readOnly: true, DiskCacheMode.Writeback);
        var sector = new byte[512];
        Assert.Equal(DiskIoStatus.Ok, disk.Read(0, sector).Status);
        Assert.All(sector, b => Assert.Equal(0xAA, b));
        Assert.Equal(Path.Combine(_dir, "ok-moved.img"), disk.Path);
    }

    [Fact]
    public void Transition_without_selinux_stops_before_any_disk_is_admitted()
    {
        var options = Options(EnforcementMode.Enforcing) with { Transition = true };
        var gate = Gate(options);
        using GateOutcome outcome = gate.Admit([Disk("ok.img")]);
        Assert.Empty(outcome.Disks);
        Assert.Null(outcome.Refusal);
        TransitionFailure failure = Assert.IsType<TransitionFailure>(gate.Transition(outcome));
        Assert.Equal(TransitionFailureKind.Usage, failure.Kind);
        Assert.Equal("--selinux-transition needs SELinux in the kernel, but is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux): " +
            "there is no VM domain to re-execute csvmm in", failure.Message);
    }

    [Fact]
    public void No_transition_requested_is_a_no_op()
    {
        var gate = Gate(SecurityOptions.Default with { Mode = EnforcementMode.Disabled });
        using GateOutcome outcome = gate.Admit([Disk("a.img")]);
        Assert.Null(gate.Transition(outcome));
    }

    [Fact]
    public void A_host_claiming_selinux_that_libselinux_denies_fails_closed()
    {
        // The state says SELinux (e.g. /sys/fs/selinux exists) but the real libselinux here says is_selinux_enabled() = 0:
        // the engine refuses to open, the disk is not labelled, and enforcing mode refuses the VM.
        if (Directory.Exists(SelinuxHost.SelinuxFs))
            return;
        var host = new SelinuxHostState(HostSelinux.Enabled, true, "user_u:user_r:user_t", "is_selinux_enabled() = 1, test host");
        using GateOutcome outcome = new DiskGate(SecurityOptions.Default, Serilog.Core.Logger.None, host).Admit([Disk("a.img")]);
        Assert.True(outcome.Plan.KernelPolicy);
        Assert.Equal(EnforcementMode.Enforcing, outcome.Plan.Mode);
        Assert.NotNull(outcome.Refusal);
        Assert.Contains("cannot read the SELinux label of", outcome.Refusal);
        Assert.False(outcome.Decision!.Allowed);
        Assert.Empty(outcome.Disks);
        Assert.Equal("user_u:user_r:user_t", outcome.ProcessContext); // getcon's answer, not the standalone default
    }

    [Fact]
    public void Failing_getcon_on_a_selinux_host_denies()
    {
        if (Directory.Exists(SelinuxHost.SelinuxFs))
            return;
        var host = new SelinuxHostState(HostSelinux.Enabled, true, null, "is_selinux_enabled() = 1, test host", "getcon() failed: Invalid argument");
        using GateOutcome outcome = new DiskGate(SecurityOptions.Default, Serilog.Core.Logger.None, host).Admit([Disk("a.img")]);
        Assert.NotNull(outcome.Refusal);
        Assert.Empty(outcome.Disks);
        Assert.Equal("(unknown)", outcome.ProcessContext);
    }
}
