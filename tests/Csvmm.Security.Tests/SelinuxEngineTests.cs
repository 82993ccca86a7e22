using System.Text;
using Csvmm.Security.Native;

namespace Csvmm.Security.Tests;

/// <summary>
/// <see cref="SelinuxEngine"/> and <see cref="EntrypointGate"/> over a fake native layer: the libselinux calls made,
/// their marshalling (NUL-terminated UTF-8 in, freecon for every context out, errno in messages), and fail-closed
/// behaviour for every kind of libselinux failure.
/// </summary>
public sealed class SelinuxEngineTests : IDisposable
{
    private const string User = "user_u:user_r:user_t";
    private const string Staff = "staff_u:staff_r:staff_t";
    private const string Disk = "system_u:object_r:qemu_virtdisk_t";
    private const string Untrusted = "system_u:object_r:untrusted_disk_t";
    private const string VmUser = "user_u:object_r:vm_user_t";
    private static readonly DiskLabel s_disk = DiskLabel.Labelled("/images/a.img", Disk, "test");
    private static readonly AvcOrigin s_origin = new(4242, "csvmm");

    private readonly FakeLibSelinux _lib = new();

    public SelinuxEngineTests()
    {
        // The csvmm.cil module on a refpolicy host, as far as the gate asks.
        _lib.Valid(User, Staff, Disk, Untrusted, VmUser)
            .Allow("user_t", "qemu_virtdisk_t", "file", "read", "open", "getattr")
            .TypeChange("user_t", "qemu_virtdisk_t", "vm", "vm_user_t")
            .Allow("qemu_virtdisk_t", "vm_user_t", "vm", "entrypoint");
    }

    public void Dispose()
    {
        // Every context libselinux handed out was released with freecon.
        Assert.Equal(0, _lib.Outstanding);
        _lib.Dispose();
    }

    private EntrypointDecision Check(EnforcementMode mode = EnforcementMode.Enforcing, string process = User, DiskLabel? disk = null) =>
        new EntrypointGate(SelinuxEngine.Open(_lib), mode, s_origin).Check(process, disk ?? s_disk);

    private static void AssertFailedClosed(EntrypointDecision d, string reasonPart)
    {
        Assert.False(d.Allowed);
        Assert.False(d.PolicyAllows);
        Assert.Contains(reasonPart, d.DenialReason);
        Assert.DoesNotContain('\n', d.DenialReason!);
    }

    [Fact]
    public void Allowed_disk_asks_the_kernel_the_three_questions()
    {
        EntrypointDecision d = Check();
        Assert.True(d.PolicyAllows, d.DenialReason);
        Assert.True(d.Allowed);
        Assert.Equal(VmUser, d.VmContext);
        Assert.Equal(
        [
            "is_selinux_enabled()",
            "string_to_security_class(file)",
            "string_to_av_perm(10, read)", "string_to_av_perm(10, open)", "string_to_av_perm(10, getattr)",
            "string_to_security_class(vm)",
            "string_to_av_perm(12, entrypoint)",
            $"security_check_context_raw({User})",
            $"security_check_context_raw({Disk})",
            $"security_compute_av_flags_raw({User}, {Disk}, 10, 0x{(1u << 1) | (1u << 15) | (1u << 4):x})",
            $"security_compute_relabel_raw({User}, {Disk}, 12)",
            "freecon()",
            $"security_compute_av_flags_raw({Disk}, {VmUser}, 12, 0x1)",
        ], _lib.Calls);
        Assert.Contains($"avc:  granted  {{ entrypoint }} for  pid=4242 comm=\"csvmm\" path=\"/images/a.img\" scontext={Disk} tcontext={VmUser} tclass=vm permissive=0",
            d.AvcLines);
    }

    [Fact]
    public void Open_refuses_without_selinux()
    {
        _lib.Enabled = 0;
        var e = Assert.Throws<SecurityPolicyException>(() => SelinuxEngine.Open(_lib));
        Assert.Equal(PolicyErrorKind.PolicyUnavailable, e.Kind);
        Assert.Contains("is_selinux_enabled() = 0", e.Message);

        _lib.Enabled = -1;
        e = Assert.Throws<SecurityPolicyException>(() => SelinuxEngine.Open(_lib));
        Assert.Contains("is_selinux_enabled() failed (-1): Cannot allocate memory", e.Message);
    }

    [Theory]
    [InlineData(FakeLibSelinux.EINVAL, "Invalid argument")]
    [InlineData(FakeLibSelinux.ENOENT, "No such file or directory")]
    public void Class_vm_absent_fails_closed_with_errno(int errno, string text)
    {
        _lib.WithoutClass("vm").ClassErrno = errno;
        EntrypointDecision d = Check();
        AssertFailedClosed(d, "the kernel's SELinux policy has no class 'vm'");
        Assert.Contains($"string_to_security_class: {text}", d.DenialReason);
        Assert.Contains("semodule -i policy/csvmm.cil", d.DenialReason);
        Assert.True(d.Failed);
        // Nothing was computed: an unknown class is never handed to the kernel (handle_unknown=allow would allow it).
        Assert.DoesNotContain(_lib.Calls, c => c.StartsWith("security_compute", StringComparison.Ordinal));
    }

    [Fact]
    public void Class_vm_absent_is_logged_in_permissive_mode_but_not_enforced()
    {
        _lib.WithoutClass("vm");
        EntrypointDecision d = Check(EnforcementMode.Permissive);
        Assert.True(d.Allowed);
        Assert.False(d.PolicyAllows);
        Assert.Contains("no class 'vm'", d.DenialReason);
    }

    [Fact]
    public void Missing_permission_fails_closed()
    {
        var engine = SelinuxEngine.Open(_lib);
        SecurityClass vm = engine.GetClass("vm");
        var e = Assert.Throws<SecurityPolicyException>(() => engine.GetPermission(vm, "boot"));
        Assert.Equal(PolicyErrorKind.UnknownPermission, e.Kind);
        Assert.Contains("class vm in the kernel's SELinux policy has no permission 'boot'", e.Message);
    }

    [Fact]
    public void Missing_type_change_rule_is_a_denial_not_the_disks_type()
    {
        // No type_change for staff_t: the kernel answers with the disk's own type.
        _lib.Allow("staff_t", "qemu_virtdisk_t", "file", "read", "open", "getattr");
        EntrypointDecision d = Check(process: Staff);
        AssertFailedClosed(d, "no type_change rule: type_change staff_t qemu_virtdisk_t:vm <vm type> is missing");
        Assert.Equal("staff_u:object_r:qemu_virtdisk_t", d.VmContext);
        Assert.Equal(CheckState.Denied, d.TypeChange.State);
        Assert.False(d.Failed);
    }

    [Theory]
    [InlineData("nobody_u:nobody_r:nobody_t", "security_check_context: Invalid argument")]
    [InlineData("not-a-context", "expected user:role:type[:level]")]
    [InlineData("user_u:user_r:user_t\n", "contains whitespace")]
    public void Invalid_process_context_fails_closed(string context, string why)
    {
        EntrypointDecision d = Check(process: context);
        AssertFailedClosed(d, "invalid security context");
        Assert.Contains(why, d.DenialReason);
        Assert.True(d.Failed);
    }

    [Fact]
    public void Denied_entrypoint_names_the_missing_rule()
    {
        _lib.Allow("user_t", "untrusted_disk_t", "file", "read", "open", "getattr")
            .TypeChange("user_t", "untrusted_disk_t", "vm", "vm_user_t");
        EntrypointDecision d = Check(disk: DiskLabel.Labelled("/images/b.img", Untrusted, "test"));
        AssertFailedClosed(d, "entrypoint denied: no rule allow untrusted_disk_t vm_user_t:vm entrypoint");
        Assert.Contains($"avc:  denied  {{ entrypoint }} for  pid=4242 comm=\"csvmm\" path=\"/images/b.img\" scontext={Untrusted} tcontext={VmUser} tclass=vm permissive=0",
            d.AvcLines);
    }

    [Theory]
    [InlineData(FakeLibSelinux.ENOMEM, "Cannot allocate memory")]
    [InlineData(FakeLibSelinux.EACCES, "Permission denied")]
    public void Compute_av_errors_fail_closed(int errno, string text)
    {
        _lib.ComputeAvErrno = errno;
        EntrypointDecision d = Check();
        AssertFailedClosed(d, $"security_compute_av_flags({User}, {Disk}, file) failed: {text}");
        Assert.True(d.Failed);
    }

    [Fact]
    public void Compute_relabel_errors_fail_closed()
    {
        _lib.RelabelErrno = FakeLibSelinux.EINVAL;
        AssertFailedClosed(Check(), $"security_compute_relabel({User}, {Disk}, vm) failed: Invalid argument");
    }

    [Fact]
    public void A_relabel_result_that_is_no_context_is_rejected_and_still_freed()
    {
        _lib.RelabelOverride = "garbage";
        AssertFailedClosed(Check(), "security_compute_relabel returned 'garbage', which is not a security context");
        Assert.Single(_lib.Freed);
    }

    [Fact]
    public void Undecided_bits_are_not_allowed_bits()
    {
        _lib.Undecided = 1; // the entrypoint bit of class vm (and ioctl of file, which is not asked)
        EntrypointDecision d = Check();
        AssertFailedClosed(d, "entrypoint denied");
    }

    [Fact]
    public void Permissive_domain_denial_is_logged_and_not_enforced()
    {
        // user_t may not read the disk, but user_t is a permissive domain: SELinux logs with permissive=1 and allows.
        var lib = new FakeLibSelinux().Valid(User, Disk, VmUser)
            .TypeChange("user_t", "qemu_virtdisk_t", "vm", "vm_user_t")
            .Allow("qemu_virtdisk_t", "vm_user_t", "vm", "entrypoint")
            .Permissive("user_t");
        using (lib)
        {
            EntrypointDecision d = new EntrypointGate(SelinuxEngine.Open(lib), EnforcementMode.Enforcing, s_origin).Check(User, s_disk);
            Assert.False(d.PolicyAllows);
            Assert.True(d.PermissiveDomain);
            Assert.True(d.Allowed);
            Assert.Contains(d.AvcLines, l => l.StartsWith("avc:  denied  { read open getattr }", StringComparison.Ordinal) && l.EndsWith("tclass=file permissive=1", StringComparison.Ordinal));
            Assert.Contains("permissive domain: not enforced", d.Describe()[^1]);

            VmDecision vm = new EntrypointGate(SelinuxEngine.Open(lib), EnforcementMode.Enforcing, s_origin).Combine([d]);
            Assert.True(vm.Allowed);
            Assert.False(vm.PolicyAllows);
            Assert.True(vm.PermissiveDomain);
            Assert.Equal(0, lib.Outstanding);
        }
    }

    [Fact]
    public void Permissive_process_domain_does_not_excuse_the_disks_entrypoint_denial()
    {
        // The entrypoint check's source is the disk type, which is not permissive.
        _lib.Permissive("user_t");
        _lib.Allow("user_t", "untrusted_disk_t", "file", "read", "open", "getattr")
            .TypeChange("user_t", "untrusted_disk_t", "vm", "vm_user_t");
        EntrypointDecision d = Check(disk: DiskLabel.Labelled("/images/b.img", Untrusted, "test"));
        Assert.False(d.PermissiveDomain);
        Assert.False(d.Allowed);
        Assert.Contains("permissive=0", d.Entrypoint.AvcLine);
    }

    [Fact]
    public void Errors_are_never_excused_by_a_permissive_domain()
    {
        _lib.Permissive("user_t").RelabelErrno = FakeLibSelinux.ENOMEM;
        EntrypointDecision d = Check();
        Assert.True(d.Failed);
        Assert.False(d.Allowed);
    }

    [Fact]
    public void Strings_are_passed_as_nul_terminated_utf8()
    {
        var engine = SelinuxEngine.Open(_lib);
        _lib.RawStrings.Clear();
        Assert.Throws<SecurityPolicyException>(() => engine.GetClass("vé"));
        byte[] raw = Assert.Single(_lib.RawStrings);
        Assert.Equal(new byte[] { (byte)'v', 0xC3, 0xA9, 0 }, raw);

        _lib.RawStrings.Clear();
        engine.GetSid(User);
        Assert.Equal(Encoding.UTF8.GetBytes(User + "\0"), Assert.Single(_lib.RawStrings));
    }

    [Fact]
    public void A_name_with_a_nul_never_reaches_libselinux()
    {
        var engine = SelinuxEngine.Open(_lib);
        int before = _lib.Calls.Count;
        var e = Assert.Throws<SecurityPolicyException>(() => engine.GetClass("vm\0file"));
        Assert.Equal(PolicyErrorKind.UnknownClass, e.Kind);
        Assert.Equal(before, _lib.Calls.Count);
    }

    [Fact]
    public void Sids_are_interned_and_foreign_sids_refused()
    {
        var engine = SelinuxEngine.Open(_lib);
        SecurityId a = engine.GetSid(User), b = engine.GetSid(User);
        Assert.Equal(a, b);
        Assert.Single(_lib.Calls, c => c.StartsWith("security_check_context_raw", StringComparison.Ordinal));
        Assert.Equal(User, engine.GetContext(a));

        var other = SelinuxEngine.Open(_lib);
        var e = Assert.Throws<SecurityPolicyException>(() => other.GetContext(a));
        Assert.Equal(PolicyErrorKind.InvalidSid, e.Kind);
        Assert.Throws<SecurityPolicyException>(() => engine.GetContext(new SecurityId(99, a.Epoch)));
        SecurityClass foreignClass = other.GetClass("vm");
        Assert.Equal(PolicyErrorKind.UnknownClass, Assert.Throws<SecurityPolicyException>(() => engine.GetPermission(foreignClass, "entrypoint")).Kind);
    }

    [Fact]
    public void Av_decision_is_libselinux_24_byte_struct()
    {
        // struct av_decision { access_vector_t allowed, decided, auditallow, auditdeny; unsigned seqno, flags; }
        Assert.Equal(24, System.Runtime.InteropServices.Marshal.SizeOf<AvDecision>());
        Assert.Equal(20, (int)System.Runtime.InteropServices.Marshal.OffsetOf<AvDecision>(nameof(AvDecision.Flags)));
        Assert.Equal(16, (int)System.Runtime.InteropServices.Marshal.OffsetOf<AvDecision>(nameof(AvDecision.SeqNo)));
        Assert.Equal(1u, AvDecision.FlagsPermissive);
    }
}
