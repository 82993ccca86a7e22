using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>Block-device ioctl numbers (linux/fs.h), computed from the _IO/_IOR encoding, not pasted.</summary>
internal static class BlockIoctl
{
    private const uint Type = 0x12, DirNone = 0, DirRead = 2;

    private static uint Encode(uint dir, uint nr, uint size) => (dir << 30) | (size << 16) | (Type << 8) | nr;

    /// <summary>BLKSSZGET = _IO(0x12, 104): the logical sector size (int).</summary>
    public static readonly uint GetSectorSize = Encode(DirNone, 104, 0);

    /// <summary>BLKGETSIZE64 = _IOR(0x12, 114, size_t): the device size in bytes (u64).</summary>
    public static readonly uint GetSize64 = Encode(DirRead, 114, (uint)IntPtr.Size);
}

/// <summary>Constants Tmds.LibC lacks or the tests prove (values checked against the C headers).</summary>
internal static class NativeConstants
{
    /// <summary>FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE (linux/falloc.h).</summary>
    public const int FallocKeepSize = 0x01, FallocPunchHole = 0x02;
    /// <summary>FALLOC_FL_ZERO_RANGE (linux/falloc.h).</summary>
    public const int FallocZeroRange = 0x10;
    /// <summary>STATX_DIOALIGN (linux/stat.h, Linux 6.1).</summary>
    public const uint StatxDioAlign = 0x2000;
    public const uint StatxType = 0x1, StatxMode = 0x2, StatxIno = 0x100, StatxSize = 0x200, StatxBlocks = 0x400;
}

/// <summary>struct statx (linux/stat.h) up to the direct-I/O alignment fields; 256 bytes as in the kernel.</summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
internal struct StatX
{
    [FieldOffset(0)] public uint Mask;
    [FieldOffset(4)] public uint BlockSize;
    [FieldOffset(28)] public ushort Mode;
    [FieldOffset(32)] public ulong Inode;
    [FieldOffset(40)] public ulong Size;
    [FieldOffset(48)] public ulong Blocks;
    [FieldOffset(128)] public uint RdevMajor;
    [FieldOffset(132)] public uint RdevMinor;
    [FieldOffset(136)] public uint DevMajor;
    [FieldOffset(140)] public uint DevMinor;
    [FieldOffset(152)] public uint DioMemAlign;
    [FieldOffset(156)] public uint DioOffsetAlign;
}

/// <summary>struct flock (asm-generic/fcntl.h, x86-64): 32 bytes; for OFD locks l_pid must be 0.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct Flock
{
    [FieldOffset(0)] public short Type;
    [FieldOffset(2)] public short Whence;
    [FieldOffset(8)] public long Start;
    [FieldOffset(16)] public long Length;
    [FieldOffset(24)] public int Pid;
}

internal static class NativePath
{
    public static byte[] ToNullTerminatedUtf8(string path)
    {
        int n = Encoding.UTF8.GetByteCount(path);
        var bytes = new byte[n + 1];
        Encoding.UTF8.GetBytes(path, bytes);
        return bytes;
    }
}

/// <summary>The block layer's system calls. Each returns 0 or a positive errno read right after the call.</summary>
internal static unsafe partial class DiskSyscalls
{
    /// <summary>statx of a path, following symlinks.</summary>
    public static int StatPath(string path, out StatX st)
    {
        byte[] native = NativePath.ToNullTerminatedUtf8(path);
        st = default;
        fixed (byte* p = native)
        fixed (StatX* s = &st)
        {
            return LibC.statx(LibC.AT_FDCWD, p, 0, Mask, (statx*)s) == 0 ? 0 : LibC.errno;
        }
    }

    /// <summary>statx of an open fd (AT_EMPTY_PATH), asking for the direct-I/O alignment too.</summary>
    public static int StatFd(int fd, out StatX st)
    {
        byte* empty = stackalloc byte[1];
        empty[0] = 0;
        st = default;
        fixed (StatX* s = &st)
            return LibC.statx(fd, empty, LibC.AT_EMPTY_PATH, Mask | NativeConstants.StatxDioAlign, (statx*)s) == 0 ? 0 : LibC.errno;
    }

    private static uint Mask =>
        NativeConstants.StatxType | NativeConstants.StatxMode | NativeConstants.StatxIno | NativeConstants.StatxSize | NativeConstants.StatxBlocks;

    public static int Ioctl(int fd, uint request, void* arg) =>
        LibC.ioctl(fd, unchecked((int)request), arg) < 0 ? LibC.errno : 0;

    public static int Fcntl(int fd, int cmd, void* arg) =>
        LibC.fcntl(fd, cmd, arg) < 0 ? LibC.errno : 0;

    public static int SetStatusFlags(int fd, int flags) =>
        LibC.fcntl(fd, LibC.F_SETFL, flags) < 0 ? LibC.errno : 0;

    /// <summary>Reads exactly <paramref name="length"/> bytes at <paramref name="offset"/>: continues short reads, retries EINTR; EOF first is an error.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DiskIoResult ReadFull(int fd, byte* buffer, int length, long offset)
    {
        int done = 0;
        while (done < length)
        {
            long n = LibC.pread(fd, buffer + done, length - done, offset + done);
            if (n > 0)
            {
                done += (int)n;
                continue;
            }
            if (n == 0) return DiskIoResult.EndOfFile;
            int errno = LibC.errno;
            if (errno != Errno.Eintr) return DiskIoResult.Host(errno);
        }
        return DiskIoResult.Ok;
    }

    /// <summary>Writes exactly <paramref name="length"/> bytes at <paramref name="offset"/>: continues short writes, retries EINTR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DiskIoResult WriteFull(int fd, byte* buffer, int length, long offset)
    {
        int done = 0;
        while (done < length)
        {
            long n = LibC.pwrite(fd, buffer + done, length - done, offset + done);
            if (n > 0)
            {
                done += (int)n;
                continue;
            }
            if (n == 0) return DiskIoResult.Host(Errno.Eio); // no progress and no error: never loop on it
            int errno = LibC.errno;
            if (errno != Errno.Eintr) return DiskIoResult.Host(errno);
        }
        return DiskIoResult.Ok;
    }

    public static int Fdatasync(int fd)
    {
        while (true)
        {
            if (LibC.fdatasync(fd) == 0) return 0;
            int errno = LibC.errno;
            if (errno != Errno.Eintr) return errno;
        }
    }

    public static int Fallocate(int fd, int mode, long offset, long length)
    {
        while (true)
        {
            if (LibC.fallocate(fd, mode, offset, length) == 0) return 0;
            int errno = LibC.errno;
            if (errno != Errno.Eintr) return errno;
        }
    }

    /// <summary>realpath(3): the canonical absolute path, or null when it cannot be resolved.</summary>
    public static string? RealPath(string path)
    {
        byte[] native = NativePath.ToNullTerminatedUtf8(path);
        byte* resolved;
        fixed (byte* p = native)
            resolved = LibCFiles.RealPath(p, null);
        if (resolved == null) return null;
        try
        {
            return Marshal.PtrToStringUTF8((nint)resolved);
        }
        finally
        {
            LibCFiles.Free(resolved); // realpath(path, NULL) mallocs
        }
    }

    /// <summary>Linux's IOV_MAX: the most buffers one preadv/pwritev takes.</summary>
    public const int IovMax = 1024;

    /// <summary>
    /// Reads (or writes, <paramref name="write"/>) all of <paramref name="count"/> buffers at consecutive file
    /// positions from <paramref name="offset"/>, IOV_MAX buffers per call. A short transfer that stops inside a
    /// buffer is finished with <see cref="ReadFull"/>/<see cref="WriteFull"/> and the vectored calls resume at the
    /// next buffer; EINTR is retried; end of file first is an error for reads, no progress is EIO for writes.
    /// </summary>
    public static DiskIoResult TransferVector(int fd, IoVector* iov, int count, long offset, bool write)
    {
        int index = 0;
        while (true)
        {
            while (index < count && iov[index].Length == 0) index++;
            if (index == count) return DiskIoResult.Ok;
            int batch = Math.Min(count - index, IovMax);
            long n = write ? pwritev(fd, iov + index, batch, offset) : preadv(fd, iov + index, batch, offset);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.Eintr) continue;
                return DiskIoResult.Host(errno);
            }
            if (n == 0) return write ? DiskIoResult.Host(Errno.Eio) : DiskIoResult.EndOfFile;
            offset += n;
            ulong done = (ulong)n;
            while (index < count && done >= iov[index].Length)
            {
                done -= iov[index].Length;
                index++;
            }
            if (done > 0)
            {
                // Stopped inside buffer `index` (done < its length <= int.MaxValue): finish it on its own.
                byte* rest = iov[index].Address + done;
                int remaining = (int)(iov[index].Length - done);
                DiskIoResult r = write ? WriteFull(fd, rest, remaining, offset) : ReadFull(fd, rest, remaining, offset);
                if (!r.IsOk) return r;
                offset += remaining;
                index++;
            }
        }
    }

    [LibraryImport("libc.so.6", EntryPoint = "preadv", SetLastError = true)]
    private static partial long preadv(int fd, IoVector* iov, int iovcnt, long offset);

    [LibraryImport("libc.so.6", EntryPoint = "pwritev", SetLastError = true)]
    private static partial long pwritev(int fd, IoVector* iov, int iovcnt, long offset);
}
