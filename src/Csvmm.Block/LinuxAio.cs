using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Csvmm.Block;

/// <summary>
/// Linux native AIO's kernel ABI (linux/aio_abi.h, x86-64): the command and flag values and the system call numbers.
/// Proven against the installed headers by the block tests' C probe.
/// </summary>
internal static class AioAbi
{
    /// <summary>IOCB_CMD_PREADV, IOCB_CMD_PWRITEV: aio_buf points at an iovec array, aio_nbytes is its count.</summary>
    public const ushort CmdPreadv = 7, CmdPwritev = 8;

    /// <summary>IOCB_FLAG_RESFD: the kernel adds 1 to the eventfd in aio_resfd when the request completes.</summary>
    public const uint FlagResfd = 1;

    /// <summary>__NR_io_setup ... __NR_io_submit on x86-64 (asm/unistd_64.h).</summary>
    public const long SysIoSetup = 206, SysIoDestroy = 207, SysIoGetevents = 208, SysIoSubmit = 209;
}

/// <summary>struct iocb (linux/aio_abi.h, little-endian): 64 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct IoCb
{
    [FieldOffset(0)] public ulong Data;
    [FieldOffset(8)] public uint Key;
    [FieldOffset(12)] public int RwFlags;
    [FieldOffset(16)] public ushort Opcode;
    [FieldOffset(18)] public short RequestPriority;
    [FieldOffset(20)] public uint FileDescriptor;
    [FieldOffset(24)] public ulong Buffer;
    [FieldOffset(32)] public ulong Bytes;
    [FieldOffset(40)] public long Offset;
    [FieldOffset(48)] public ulong Reserved2;
    [FieldOffset(56)] public uint Flags;
    [FieldOffset(60)] public uint ResultFd;
}

/// <summary>struct io_event (linux/aio_abi.h): 32 bytes. <see cref="Result"/> is the byte count or a negative errno.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct IoEvent
{
    [FieldOffset(0)] public ulong Data;
    [FieldOffset(8)] public ulong Object;
    [FieldOffset(16)] public long Result;
    [FieldOffset(24)] public long Result2;
}

/// <summary>
/// The header of the kernel's completion ring (fs/aio.c, struct aio_ring): io_setup maps it into the process and
/// returns its address as the context id; io_events follow the header. The kernel writes the events and
/// <see cref="Tail"/>; whoever reaps them advances <see cref="Head"/> (io_getevents, or user space directly).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct AioRing
{
    /// <summary>AIO_RING_MAGIC: the ring is laid out as below.</summary>
    public const uint Magic = 0xa10a10a1;

    /// <summary>sizeof(struct aio_ring): the first io_event starts here.</summary>
    public const uint HeaderLength = 32;

    [FieldOffset(0)] public uint Id;
    /// <summary>Ring size in io_events; <see cref="Head"/> and <see cref="Tail"/> are below it.</summary>
    [FieldOffset(4)] public uint Count;
    [FieldOffset(8)] public uint Head;
    [FieldOffset(12)] public uint Tail;
    [FieldOffset(16)] public uint RingMagic;
    [FieldOffset(20)] public uint CompatFeatures;
    /// <summary>0: no feature that changes the layout (user-space reaping is only sound then).</summary>
    [FieldOffset(24)] public uint IncompatFeatures;
    [FieldOffset(28)] public uint RingHeaderLength;
}

/// <summary>struct timespec (x86-64): 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AioTimespec
{
    public long Seconds;
    public long Nanoseconds;
}

/// <summary>
/// The AIO system calls through syscall(2) (glibc has no wrappers). Each returns the kernel's value, or -1 with the
/// errno in <c>errno</c>, read right after the call.
/// </summary>
internal static unsafe partial class AioSyscalls
{
    /// <summary>io_setup(nr_events, &amp;ctx): 0 and the context, or the errno.</summary>
    public static int Setup(uint events, out ulong context)
    {
        ulong ctx = 0; // must be 0 on entry
        long r = syscall(AioAbi.SysIoSetup, (nint)events, (nint)(&ctx), 0, 0, 0);
        int errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        context = ctx;
        return errno;
    }

    /// <summary>io_destroy: waits for the context's requests, then frees it.</summary>
    public static int Destroy(ulong context) =>
        syscall(AioAbi.SysIoDestroy, (nint)context, 0, 0, 0, 0) < 0 ? Marshal.GetLastPInvokeError() : 0;

    /// <summary>io_submit: the count of iocbs the kernel took (a prefix), or -1 with <paramref name="errno"/> when it took none.</summary>
    public static long Submit(ulong context, int count, IoCb** iocbs, out int errno)
    {
        long r = syscall(AioAbi.SysIoSubmit, (nint)context, count, (nint)iocbs, 0, 0);
        errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        return r;
    }

    /// <summary>io_getevents: between <paramref name="min"/> and <paramref name="max"/> events; null timeout waits for <paramref name="min"/>.</summary>
    public static long GetEvents(ulong context, int min, int max, IoEvent* events, AioTimespec* timeout, out int errno)
    {
        long r = syscall(AioAbi.SysIoGetevents, (nint)context, min, max, (nint)events, (nint)timeout);
        errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        return r;
    }

    // syscall(2) is variadic; on x86-64 integer arguments travel in the same registers either way, and glibc's
    // implementation moves them straight into the kernel's registers.
    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, nint a1, nint a2, nint a3, nint a4, nint a5);
}

/// <summary>Owns an AIO context (aio_context_t); io_destroy exactly once, which waits for requests still in flight.</summary>
internal sealed class AioContextHandle : SafeHandle
{
    public AioContextHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle() => AioSyscalls.Destroy((ulong)handle.ToInt64()) == 0;

    /// <summary>io_setup. Returns 0 and a live handle, or the errno (and an invalid handle).</summary>
    public static int Create(uint events, out AioContextHandle handle)
    {
        handle = new AioContextHandle();
        int err = AioSyscalls.Setup(events, out ulong ctx);
        if (err != 0) return err;
        handle.SetHandle(new IntPtr((long)ctx));
        return 0;
    }

    /// <summary>The context id for the owner's calls (the owner keeps the handle alive while it uses it).</summary>
    public ulong Context => (ulong)handle.ToInt64();
}
