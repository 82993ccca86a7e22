using Csvmm.Kvm;
using Csvmm.Sys;

namespace Csvmm.Machine.Hardening;

/// <summary>
/// The system calls each kind of csvmm thread may make once it is running guest-facing code (Firecracker's and Cloud
/// Hypervisor's per-thread filters). Measured with strace on this project's tests and boots, and proven by running the
/// whole test suite and the real-kernel boots under <see cref="SeccompMode.Kill"/>: anything else kills csvmm.
/// <list type="bullet">
/// <item><see cref="Runtime"/>: what .NET's runtime does on any thread of its own accord — futexes (locks, waits), GC
/// allocation and heap commits (mmap, munmap, mprotect, madvise), thread suspension for a GC (signals: tgkill,
/// rt_sigreturn, rt_sigprocmask; membarrier for FlushProcessWriteBuffers), timed waits, yielding, the thread's own exit,
/// and writing a log line (write).</item>
/// <item>vCPU: KVM_RUN and the vCPU and VM ioctls exits need (registers for the emulator, interrupt lines, MSI, the
/// ioeventfds / irqfds / GSI routes a guest's virtio and MSI-X programming sets up, and their eventfds); disk I/O for
/// IDE's PIO commands.</item>
/// <item>Device I/O: poll on its eventfds, reads and writes of them, the disk's reads, writes, flushes and discards
/// (synchronous or Linux AIO), and the VM ioctls that raise an interrupt.</item>
/// <item>Console: reads of the host's input, writes of the guest's output, poll, a flush.</item>
/// </list>
/// Not confined yet: the main thread (it builds and tears down the machine), the QMP and migration threads.
/// No list has open, socket, clone or execve: a thread that must start another asks an unconfined spawner
/// (<see cref="ThreadConfinement.Start"/>), and libc is bound at link time (DirectPInvoke), since a P/Invoke bound on
/// first use opens the library from the calling thread.
/// </summary>
public static partial class SeccompProfiles
{
    public static readonly string[] Runtime =
    [
        "futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime", "gettimeofday", "restart_syscall",
        "mmap", "munmap", "mprotect", "madvise", "brk", "membarrier",
        "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "tgkill", "gettid", "getpid", "sched_getaffinity",
        "write", "exit", "exit_group",
    ];

    private static readonly string[] DiskIo =
    [
        "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "fdatasync", "fsync", "fallocate",
    ];

    private static readonly string[] Aio = ["io_submit", "io_getevents", "io_pgetevents", "io_cancel"];

    /// <summary>VM ioctls that raise or route interrupts and register doorbells (any thread that drives a device).</summary>
    private static readonly uint[] InterruptIoctls =
        [KvmIoctl.IrqLine, KvmIoctl.SetGsiRouting, KvmIoctl.Irqfd, KvmIoctl.Ioeventfd, KvmIoctl.CheckExtension];

    /// <summary>What a vCPU thread's exits need of its vCPU: the run itself and the state the emulator and the pause read and write.</summary>
    private static readonly uint[] VcpuIoctls =
    [
        KvmIoctl.Run, KvmIoctl.GetRegs, KvmIoctl.SetRegs, KvmIoctl.GetSregs, KvmIoctl.SetSregs, KvmIoctl.GetFpu, KvmIoctl.SetFpu,
        KvmIoctl.GetMsrs, KvmIoctl.SetMsrs, KvmIoctl.GetVcpuEvents, KvmIoctl.SetVcpuEvents, KvmIoctl.GetMpState, KvmIoctl.SetMpState,
        KvmIoctl.GetLapic, KvmIoctl.SetLapic, KvmIoctl.GetXcrs, KvmIoctl.GetDebugregs,
    ];

    /// <summary>The system calls <paramref name="role"/> threads may make.</summary>
    public static IReadOnlyList<string> Syscalls(ThreadRole role) => role switch
    {
        // eventfd2 / close / io_setup / io_destroy: a virtio device's doorbells, interrupt lines and AIO context (cache=none)
        // are made when the guest enables it and released when it resets it, both from the vCPU's MMIO exit.
        ThreadRole.Vcpu => [.. Runtime, .. DiskIo, "read", "eventfd2", "close", "io_setup", "io_destroy"],
        ThreadRole.DeviceIo => [.. Runtime, .. DiskIo, .. Aio, "read", "poll", "ppoll"],
        // pread64: .NET reads a seekable stdin (a file, /dev/null) with pread.
        ThreadRole.Console => [.. Runtime, "read", "pread64", "poll", "ppoll"],
        _ => throw new ArgumentOutOfRangeException(nameof(role)),
    };

    /// <summary>The ioctl requests <paramref name="role"/> threads may issue (any other ioctl is refused).</summary>
    public static IReadOnlyList<uint> Ioctls(ThreadRole role) => role switch
    {
        ThreadRole.Vcpu => [.. VcpuIoctls, .. InterruptIoctls],
        ThreadRole.DeviceIo => InterruptIoctls,
        ThreadRole.Console => [],
        _ => throw new ArgumentOutOfRangeException(nameof(role)),
    };

    /// <summary>
    /// Installs <paramref name="role"/>'s filter on the calling thread. <paramref name="selfTest"/>: right after, a
    /// thread of that role makes a call on no list (getppid), so a test sees the filter act (csvmm dies of SIGSYS).
    /// </summary>
    public static void Apply(ThreadRole role, SeccompMode mode, ThreadRole? selfTest = null)
    {
        if (mode == SeccompMode.Off) return;
        using var filter = new SeccompFilter(mode);
        foreach (string name in Syscalls(role)) filter.Allow(name);
        var ioctls = Ioctls(role);
        if (ioctls.Count > 0) filter.AllowIoctl(ioctls);
        filter.Load();
        if (selfTest == role) SelfTestViolation();
    }

    [System.Runtime.InteropServices.LibraryImport("libc.so.6", EntryPoint = "getppid")]
    private static partial int GetParentPid();

    private static void SelfTestViolation() => GetParentPid();
}
