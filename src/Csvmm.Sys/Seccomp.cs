using System.Runtime.InteropServices;

namespace Csvmm.Sys;

/// <summary>What a seccomp filter does with a system call that is not on its list.</summary>
public enum SeccompMode
{
    /// <summary>No filter.</summary>
    Off,
    /// <summary>Allowed, and logged by the kernel (audit / dmesg: "type=1326 ... comm=THREAD ... syscall=N").</summary>
    Log,
    /// <summary>The whole process is killed with SIGSYS (SECCOMP_RET_KILL_PROCESS), and the kernel logs the call.</summary>
    Kill,
}

/// <summary>
/// A seccomp-BPF filter for the calling thread, built with libseccomp (Debian's libseccomp2) rather than by hand:
/// <see cref="Allow(string)"/> system calls by name (resolved for this architecture by libseccomp), or only some
/// ioctl requests, then <see cref="Load"/> it on the calling thread alone (no TSYNC: every thread kind has its own
/// list). libseccomp sets no_new_privs first, as the kernel requires of an unprivileged filter.
/// </summary>
public sealed unsafe partial class SeccompFilter : IDisposable
{
    private const string Lib = "libseccomp.so.2";
    private const uint ActKillProcess = 0x8000_0000, ActLog = 0x7FFC_0000, ActAllow = 0x7FFF_0000;
    private const int AttrCtlLog = 6;
    private const int CmpMaskedEq = 7;
    private nint _ctx;

    [StructLayout(LayoutKind.Sequential)]
    private struct ArgCmp
    {
        public uint Arg;
        public int Op;
        public ulong DatumA, DatumB;
    }

    [LibraryImport(Lib, EntryPoint = "seccomp_init")] private static partial nint Init(uint defaultAction);
    [LibraryImport(Lib, EntryPoint = "seccomp_release")] private static partial void Release(nint ctx);
    [LibraryImport(Lib, EntryPoint = "seccomp_rule_add_array")] private static partial int RuleAdd(nint ctx, uint action, int syscall, uint count, ArgCmp* args);
    [LibraryImport(Lib, EntryPoint = "seccomp_syscall_resolve_name", StringMarshalling = StringMarshalling.Utf8)] private static partial int Resolve(string name);
    [LibraryImport(Lib, EntryPoint = "seccomp_load")] private static partial int LoadFilter(nint ctx);
    [LibraryImport(Lib, EntryPoint = "seccomp_attr_set")] private static partial int AttrSet(nint ctx, int attr, uint value);

    /// <summary>A filter whose default (a call on no list) is <paramref name="mode"/>'s action.</summary>
    /// <exception cref="SysException">libseccomp is missing or refused.</exception>
    public SeccompFilter(SeccompMode mode)
    {
        if (mode == SeccompMode.Off) throw new ArgumentOutOfRangeException(nameof(mode), "a filter needs an action");
        try
        {
            _ctx = Init(mode == SeccompMode.Kill ? ActKillProcess : ActLog);
        }
        catch (DllNotFoundException)
        {
            throw new SysException($"seccomp: {Lib} is not installed (Debian: libseccomp2); run with --seccomp off to go without filters");
        }
        if (_ctx == 0) throw new SysException("seccomp: seccomp_init failed");
        // The kernel logs the refused call, so the thread and system call are on record. Best effort: a kernel without
        // SECCOMP_FILTER_FLAG_LOG still kills, only unlogged.
        AttrSet(_ctx, AttrCtlLog, 1);
    }

    /// <summary>Allows <paramref name="syscall"/> (a name from the kernel's table, e.g. "futex").</summary>
    public SeccompFilter Allow(string syscall)
    {
        int nr = Number(syscall);
        Check(RuleAdd(_ctx, ActAllow, nr, 0, null), $"allow {syscall}");
        return this;
    }

    /// <summary>Allows ioctl only with one of <paramref name="requests"/> (compared on the low 32 bits, as the kernel reads the request).</summary>
    public SeccompFilter AllowIoctl(IEnumerable<uint> requests)
    {
        int nr = Number("ioctl");
        foreach (uint request in requests.Distinct())
        {
            var cmp = new ArgCmp { Arg = 1, Op = CmpMaskedEq, DatumA = 0xFFFF_FFFF, DatumB = request };
            Check(RuleAdd(_ctx, ActAllow, nr, 1, &cmp), $"allow ioctl 0x{request:x8}");
        }
        return this;
    }

    /// <summary>Installs the filter on the calling thread (for good: a filter cannot be removed).</summary>
    public void Load() => Check(LoadFilter(_ctx), "seccomp_load");

    /// <summary>The kernel's number for <paramref name="syscall"/> on this architecture.</summary>
    public static int Number(string syscall)
    {
        int nr = Resolve(syscall);
        if (nr < 0) throw new SysException($"seccomp: no system call named {syscall} on this architecture");
        return nr;
    }

    private static void Check(int rc, string what)
    {
        if (rc < 0) throw new SysException($"seccomp: {what} failed: {Marshal.GetPInvokeErrorMessage(-rc)}");
    }

    public void Dispose()
    {
        if (_ctx != 0) Release(_ctx);
        _ctx = 0;
    }
}

/// <summary>The kinds of threads csvmm confines, each with its own system-call list.</summary>
public enum ThreadRole
{
    /// <summary>A vCPU: KVM_RUN and the exits it handles (port and MMIO devices, IDE PIO, the emulator).</summary>
    Vcpu,
    /// <summary>A device's I/O thread (virtio queues, IDE bus-master DMA): disk I/O, eventfds, interrupts.</summary>
    DeviceIo,
    /// <summary>The console threads: guest output to the host, host input to the guest.</summary>
    Console,
}

/// <summary>
/// Where threads confine themselves: each thread kind calls <see cref="Enter"/> once its set-up is done and before it
/// touches anything the guest controls. What that does is installed once by the program (<see cref="Install"/>:
/// csvmm's seccomp profiles); until then, and in tests, nothing.
/// <para>
/// A thread inherits the filters of the thread that created it, and a confined thread may not create threads at all;
/// yet a device's I/O thread starts when the guest enables the device, i.e. on a vCPU thread. So device threads are
/// started through <see cref="Start"/>: once confinement is installed, an unconfined spawner thread (made by
/// <see cref="Install"/>, before any VM exists) starts them while the caller waits.
/// </para>
/// </summary>
public static class ThreadConfinement
{
    private static Action<ThreadRole>? _confine;
    private static Spawner? _spawner;

    /// <summary>Sets what <see cref="Enter"/> does, for every thread started afterwards. Call before any VM is built.</summary>
    public static void Install(Action<ThreadRole>? confine)
    {
        _confine = confine;
        if (confine is not null) _spawner ??= new Spawner();
    }

    /// <summary>Starts <paramref name="thread"/> from a thread no filter confines (directly when nothing is installed).</summary>
    public static void Start(Thread thread)
    {
        ArgumentNullException.ThrowIfNull(thread);
        if (_spawner is { } s) s.Start(thread);
        else thread.Start();
    }

    private sealed class Spawner
    {
        private sealed class Request(Thread thread)
        {
            public Thread Thread { get; } = thread;
            public Exception? Error;
            public bool Done;
        }

        private readonly Queue<Request> _queue = new();
        private readonly object _lock = new(); // Monitor.Wait/Pulse need a monitor

        public Spawner() => new Thread(Loop) { IsBackground = true, Name = "spawner" }.Start();

        public void Start(Thread thread)
        {
            var request = new Request(thread);
            lock (_lock)
            {
                _queue.Enqueue(request);
                Monitor.PulseAll(_lock);
                while (!request.Done) Monitor.Wait(_lock);
            }
            if (request.Error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }

        private void Loop()
        {
            while (true)
            {
                Request r;
                lock (_lock)
                {
                    while (_queue.Count == 0) Monitor.Wait(_lock);
                    r = _queue.Dequeue();
                }
                try { r.Thread.Start(); }
                catch (Exception e) { r.Error = e; }
                lock (_lock)
                {
                    r.Done = true;
                    Monitor.PulseAll(_lock);
                }
            }
        }
    }

    /// <summary>Confines the calling thread as a <paramref name="role"/> thread (nothing when none is installed).</summary>
    /// <exception cref="SysException">The confinement could not be applied.</exception>
    public static void Enter(ThreadRole role) => _confine?.Invoke(role);
}
