using System.Collections;
using System.Runtime.InteropServices;
using Csvmm.Security.Native;
using Microsoft.Win32.SafeHandles;

namespace Csvmm.Security.Tests;

/// <summary><see cref="SelinuxHost"/> (probe, file labels) and <see cref="SelinuxTransition"/> over the fake native layer.</summary>
public sealed class SelinuxHostTests : IDisposable
{
    private readonly FakeLibSelinux _lib = new();

    public void Dispose()
    {
        Assert.Equal(0, _lib.Outstanding);
        _lib.Dispose();
    }

    [Fact]
    public void Probe_without_selinux_asks_nothing_more()
    {
        _lib.Enabled = 0;
        SelinuxHostState s = SelinuxHost.Probe(_lib, selinuxFsExists: false);
        Assert.Equal(HostSelinux.Absent, s.State);
        Assert.Equal("is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux)", s.Explanation);
        Assert.Null(s.KernelEnforcing);
        Assert.Null(s.ProcessContext);
        Assert.Equal(["is_selinux_enabled()"], _lib.Calls);
    }

    [Theory]
    [InlineData(1, true, "security_getenforce() = 1 (enforcing)")]
    [InlineData(0, false, "security_getenforce() = 0 (permissive)")]
    [InlineData(-1, null, "security_getenforce() failed (No such file or directory)")]
    public void Probe_with_selinux_reads_enforce_and_context(int enforce, bool? enforcing, string text)
    {
        _lib.Enforce = enforce;
        SelinuxHostState s = SelinuxHost.Probe(_lib, selinuxFsExists: true);
        Assert.Equal(HostSelinux.Enabled, s.State);
        Assert.Equal(enforcing, s.KernelEnforcing);
        Assert.Equal("user_u:user_r:user_t", s.ProcessContext);
        Assert.Equal($"is_selinux_enabled() = 1, {text}, getcon() = user_u:user_r:user_t", s.Explanation);
        Assert.Single(_lib.Freed);
    }

    [Fact]
    public void Probe_reports_a_failing_getcon()
    {
        _lib.CurrentContext = null;
        _lib.GetconErrno = FakeLibSelinux.EINVAL;
        SelinuxHostState s = SelinuxHost.Probe(_lib, selinuxFsExists: true);
        Assert.True(s.Enabled);
        Assert.Null(s.ProcessContext);
        Assert.Equal("getcon() failed: Invalid argument", s.ProcessContextError);
    }

    [Fact]
    public void Probe_fails_closed_when_enabled_cannot_be_determined()
    {
        _lib.Enabled = -1;
        Assert.True(SelinuxHost.Probe(_lib, selinuxFsExists: false).Enabled);

        _lib.ThrowOnEnabled = new DllNotFoundException("libselinux.so.1: cannot open shared object file");
        SelinuxHostState withFs = SelinuxHost.Probe(_lib, selinuxFsExists: true);
        Assert.True(withFs.Enabled);
        Assert.Contains("assuming SELinux is enabled (fail closed)", withFs.Explanation);
        SelinuxHostState withoutFs = SelinuxHost.Probe(_lib, selinuxFsExists: false);
        Assert.False(withoutFs.Enabled);
        Assert.Contains("libselinux.so.1 is not usable", withoutFs.Explanation);
    }

    private static SafeFileHandle FakeFd(int fd) => new(fd, ownsHandle: false);

    [Fact]
    public void File_label_comes_from_fgetfilecon_and_is_freed()
    {
        _lib.FileLabels[7] = "system_u:object_r:qemu_virtdisk_t";
        DiskLabel l = SelinuxHost.FileLabel(_lib, FakeFd(7), "/images/a.img");
        Assert.Equal("system_u:object_r:qemu_virtdisk_t", l.Context);
        Assert.Equal("SELinux file label (fgetfilecon)", l.Source);
        Assert.Equal(["fgetfilecon_raw(7)", "freecon()"], _lib.Calls);
    }

    [Fact]
    public void O_path_descriptor_is_labelled_through_its_proc_link()
    {
        _lib.FdIsOPath = true;
        _lib.PathLabels["/proc/self/fd/7"] = "system_u:object_r:qemu_virtdisk_t";
        DiskLabel l = SelinuxHost.FileLabel(_lib, FakeFd(7), "/images/a.img");
        Assert.Equal("system_u:object_r:qemu_virtdisk_t", l.Context);
        Assert.Equal(["fgetfilecon_raw(7)", "getfilecon_raw(/proc/self/fd/7)", "freecon()"], _lib.Calls);
        Assert.Equal("/proc/self/fd/7\0"u8.ToArray(), _lib.RawStrings[^1]);
    }

    [Theory]
    [InlineData(FakeLibSelinux.ENODATA, "No data available")]
    [InlineData(FakeLibSelinux.EACCES, "Permission denied")]
    public void Unreadable_label_is_an_unlabelled_disk(int errno, string text)
    {
        _lib.FileErrno = errno;
        DiskLabel l = SelinuxHost.FileLabel(_lib, FakeFd(7), "/images/a.img");
        Assert.Null(l.Context);
        Assert.Equal($"cannot read the SELinux label of /images/a.img: {text}", l.Failure);
    }

    [Fact]
    public void A_label_that_is_no_context_is_refused_and_freed()
    {
        _lib.FileLabels[7] = "unlabeled";
        DiskLabel l = SelinuxHost.FileLabel(_lib, FakeFd(7), "/images/a.img");
        Assert.Null(l.Context);
        Assert.Contains("is not a security context", l.Failure);
        Assert.Single(_lib.Freed);
    }

    [Fact]
    public void Exec_context_keeps_the_process_user_and_role()
    {
        Assert.Equal("user_u:user_r:vm_user_t", SelinuxTransition.ExecContext("user_u:user_r:user_t", "user_u:object_r:vm_user_t"));
        Assert.Equal("user_u:user_r:vm_user_t:s0:c1,c2",
            SelinuxTransition.ExecContext("user_u:user_r:user_t:s0", "user_u:object_r:vm_user_t:s0:c1,c2"));
        Assert.Throws<SecurityPolicyException>(() => SelinuxTransition.ExecContext("bad", "user_u:object_r:vm_user_t"));
    }

    [Theory]
    [InlineData("user_u:user_r:user_t user_u:user_r:vm_user_t", true)]
    [InlineData("user_u:user_r:user_t", false)]
    [InlineData("user_u:user_r:user_t  user_u:user_r:vm_user_t", false)]
    [InlineData("a b", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    public void Marker_round_trips_and_rejects_junk(string? value, bool valid)
    {
        TransitionMarker? m = SelinuxTransition.ParseMarker(value);
        Assert.Equal(valid, m is not null);
        if (m is not null)
            Assert.Equal(value, SelinuxTransition.FormatMarker(m));
    }

    [Fact]
    public void ReExec_sets_the_exec_context_and_execs_itself_with_the_marker()
    {
        var marker = new TransitionMarker("user_u:user_r:user_t", "user_u:user_r:vm_user_t");
        var env = new Hashtable { ["PATH"] = "/usr/bin", ["LANG"] = "C.UTF-8", [SelinuxTransition.MarkerVariable] = "stale" };
        var e = Assert.Throws<SecurityPolicyException>(() =>
            SelinuxTransition.ReExec(_lib, "/proc/self/exe", ["/usr/bin/csvmm", "--disk", "/images/é.img", "--selinux-transition"], env, marker));

        Assert.Equal(["setexeccon_raw(user_u:user_r:vm_user_t)", "execve(/proc/self/exe)", "setexeccon_raw(NULL)"], _lib.Calls);
        Assert.Equal("/proc/self/exe", _lib.ExecPath);
        Assert.Equal(["/usr/bin/csvmm", "--disk", "/images/é.img", "--selinux-transition"], _lib.ExecArgv);
        Assert.Equal(["LANG=C.UTF-8", "PATH=/usr/bin", "CSVMM_SELINUX_TRANSITION=user_u:user_r:user_t user_u:user_r:vm_user_t"], _lib.ExecEnvp);
        // The fake's execve fails with EACCES: the failure is explained and the exec context is reset.
        Assert.Equal(PolicyErrorKind.TransitionFailed, e.Kind);
        Assert.Contains("cannot re-execute csvmm in user_u:user_r:vm_user_t: execve(/proc/self/exe) failed: Permission denied", e.Message);
        Assert.Null(_lib.ExecContext);
    }

    [Fact]
    public void ReExec_stops_when_setexeccon_fails()
    {
        _lib.SetexecconErrno = FakeLibSelinux.EINVAL;
        var e = Assert.Throws<SecurityPolicyException>(() => SelinuxTransition.ReExec(_lib, "/proc/self/exe", ["csvmm"], new Hashtable(),
            new TransitionMarker("user_u:user_r:user_t", "user_u:user_r:vm_user_t")));
        Assert.Equal("setexeccon(user_u:user_r:vm_user_t) failed: Invalid argument", e.Message);
        Assert.DoesNotContain(_lib.Calls, c => c.StartsWith("execve", StringComparison.Ordinal));
    }

    [Fact]
    public void ReExec_refuses_a_malformed_exec_context_before_any_call()
    {
        Assert.Throws<SecurityPolicyException>(() => SelinuxTransition.ReExec(_lib, "/proc/self/exe", ["csvmm"], new Hashtable(),
            new TransitionMarker("user_u:user_r:user_t", "vm_user_t")));
        Assert.Empty(_lib.Calls);
    }
}

/// <summary>
/// The real libselinux.so.1 on this host, which has no SELinux in its kernel: is_selinux_enabled() = 0 is detected, and
/// the calls that would decide answer with failures (the fail-closed path), as documented.
/// </summary>
public sealed unsafe partial class RealLibselinuxTests
{
    private static bool HostHasSelinux => Directory.Exists(SelinuxHost.SelinuxFs);

    [Fact]
    public void Is_selinux_enabled_is_0_and_reported()
    {
        if (HostHasSelinux)
            return; // the project's machines have none (notes/selinux.md)
        Assert.Equal(0, LibSelinuxNative.Instance.IsSelinuxEnabled());
        SelinuxHostState s = SelinuxHost.Probe();
        Assert.Equal(HostSelinux.Absent, s.State);
        Assert.Equal("is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux)", s.Explanation);
        Assert.Equal((HostSelinux.Absent, s.Explanation), SelinuxHost.Detect());
    }

    [Fact]
    public void The_engine_refuses_to_open()
    {
        if (HostHasSelinux)
            return;
        var e = Assert.Throws<SecurityPolicyException>(SelinuxEngine.Open);
        Assert.Equal(PolicyErrorKind.PolicyUnavailable, e.Kind);
        Assert.Contains("is_selinux_enabled() = 0", e.Message);
    }

    [Fact]
    public void Deciding_calls_fail_without_selinuxfs()
    {
        if (HostHasSelinux)
            return;
        ILibSelinux lib = LibSelinuxNative.Instance;
        // security_getenforce reads <selinuxfs>/enforce: -1, ENOENT.
        Assert.Equal(-1, lib.SecurityGetenforce());
        Assert.Equal(FakeLibSelinux.ENOENT, lib.LastError);
        // string_to_security_class finds no <selinuxfs>/class/vm: 0 (never a class number), EINVAL.
        fixed (byte* vm = "vm\0"u8)
        {
            Assert.Equal(0, lib.StringToSecurityClass(vm));
            Assert.Equal(FakeLibSelinux.EINVAL, lib.LastError);
        }
        fixed (byte* file = "file\0"u8)
            Assert.Equal(0, lib.StringToSecurityClass(file));
        // security_check_context and security_compute_relabel: -1 (no selinuxfs to ask).
        fixed (byte* user = "user_u:user_r:user_t\0"u8)
        fixed (byte* disk = "system_u:object_r:qemu_virtdisk_t\0"u8)
        {
            Assert.Equal(-1, lib.SecurityCheckContextRaw(user));
            byte* result = null;
            Assert.Equal(-1, lib.SecurityComputeRelabelRaw(user, disk, 1, &result));
            Assert.True(result == null);
            AvDecision avd;
            Assert.Equal(-1, lib.SecurityComputeAvFlagsRaw(user, disk, 1, 1, &avd));
        }
        // getcon: no LSM provides /proc/self/attr/current here.
        byte* context = null;
        Assert.Equal(-1, lib.GetconRaw(&context));
        Assert.True(context == null);
    }

    private const int O_PATH = 0x200000, O_CLOEXEC = 0x80000;

    [LibraryImport("libc.so.6", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "setxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int SetXattr(string path, string name, byte[] value, nuint size, int flags);

    private static SafeFileHandle OpenPath(string path)
    {
        int fd = Open(path, O_PATH | O_CLOEXEC);
        Assert.True(fd >= 0, $"open {path}: errno {Marshal.GetLastPInvokeError()}");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    [Fact]
    public void Real_fgetfilecon_labels_an_o_path_descriptor()
    {
        // Without SELinux any owner may write security.selinux (self-asserted, see notes/selinux.md): enough to drive the
        // real libselinux's fgetfilecon_raw, its EBADF on O_PATH (libselinux 3.4), the /proc/self/fd fallback and freecon.
        string path = Path.GetTempFileName();
        try
        {
            byte[] label = "system_u:object_r:qemu_virtdisk_t\0"u8.ToArray();
            if (SetXattr(path, "security.selinux", label, (nuint)label.Length, 0) != 0)
                return; // the temporary file system keeps no security.* attributes
            using SafeFileHandle h = OpenPath(path);
            DiskLabel l = SelinuxHost.FileLabel(h, path);
            Assert.Equal("system_u:object_r:qemu_virtdisk_t", l.Context);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Real_fgetfilecon_of_an_unlabelled_file_is_an_unlabelled_disk()
    {
        string path = Path.GetTempFileName();
        try
        {
            using SafeFileHandle h = OpenPath(path);
            DiskLabel l = SelinuxHost.FileLabel(h, path);
            if (HostHasSelinux)
                return;
            Assert.Null(l.Context);
            Assert.StartsWith($"cannot read the SELinux label of {path}: ", l.Failure);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
