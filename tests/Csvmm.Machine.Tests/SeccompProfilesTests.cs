using Csvmm.Kvm;
using Csvmm.Machine.Hardening;
using Csvmm.Sys;

namespace Csvmm.Machine.Tests;

/// <summary>The per-thread allow-lists: every name is a system call of this architecture and the lists stay small.</summary>
public sealed class SeccompProfilesTests
{
    [Theory]
    [InlineData(ThreadRole.Vcpu)]
    [InlineData(ThreadRole.DeviceIo)]
    [InlineData(ThreadRole.Console)]
    public void Every_listed_call_resolves_and_the_dangerous_ones_are_absent(ThreadRole role)
    {
        var names = SeccompProfiles.Syscalls(role);
        Assert.Equal(names.Count, names.Distinct().Count());
        Assert.All(names, n => Assert.True(SeccompFilter.Number(n) >= 0, n));
        // What an attacker who owns a device model would want first: new processes, files, sockets, privileges, tracing.
        foreach (string never in new[] { "execve", "execveat", "fork", "vfork", "clone", "clone3", "open", "openat", "socket", "connect",
                     "ptrace", "setuid", "mount", "kill", "process_vm_writev", "memfd_create", "bpf", "prctl", "seccomp", "unshare" })
            Assert.DoesNotContain(never, names);
        Assert.InRange(names.Count, 10, 45);
    }

    [Fact]
    public void Only_vcpu_threads_may_run_a_vcpu_and_no_thread_may_create_vms_vcpus_or_memory()
    {
        Assert.Contains(KvmIoctl.Run, SeccompProfiles.Ioctls(ThreadRole.Vcpu));
        Assert.DoesNotContain(KvmIoctl.Run, SeccompProfiles.Ioctls(ThreadRole.DeviceIo));
        Assert.Empty(SeccompProfiles.Ioctls(ThreadRole.Console));
        foreach (var role in Enum.GetValues<ThreadRole>())
            foreach (uint forbidden in new[] { KvmIoctl.CreateVm, KvmIoctl.CreateVcpu, KvmIoctl.SetUserMemoryRegion, KvmIoctl.SetCpuid2, KvmIoctl.EnableCap })
                Assert.DoesNotContain(forbidden, SeccompProfiles.Ioctls(role));
    }

    [Fact]
    public void The_list_sizes_are_the_ones_README_reports()
    {
        // README.md, "Hardening": change both together.
        Assert.Equal(37, SeccompProfiles.Syscalls(ThreadRole.Vcpu).Count);
        Assert.Equal(22, SeccompProfiles.Ioctls(ThreadRole.Vcpu).Count);
        Assert.Equal(39, SeccompProfiles.Syscalls(ThreadRole.DeviceIo).Count);
        Assert.Equal(5, SeccompProfiles.Ioctls(ThreadRole.DeviceIo).Count);
        Assert.Equal(27, SeccompProfiles.Syscalls(ThreadRole.Console).Count);
    }

    [Fact]
    public void A_filter_is_built_for_each_role_without_loading_it()
    {
        foreach (var role in Enum.GetValues<ThreadRole>())
        {
            using var filter = new SeccompFilter(SeccompMode.Kill);
            foreach (string n in SeccompProfiles.Syscalls(role)) filter.Allow(n);
            filter.AllowIoctl(SeccompProfiles.Ioctls(role));
        }
        Assert.Throws<SysException>(() => SeccompFilter.Number("no_such_call"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SeccompFilter(SeccompMode.Off));
    }
}
