using Csvmm.Sys;
using Tmds.Linux;

namespace Csvmm.Block;

/// <summary>
/// Owns one disk image or block-device file descriptor, closed exactly once. Closing it also drops the image's
/// OFD lock (the lock belongs to the open file description). Raw fds never leave the block layer's interop code.
/// </summary>
internal sealed class DiskFileHandle : FdHandle
{
    /// <summary>open(2). Returns 0 and a live handle, or the errno (and an invalid handle).</summary>
    public static unsafe int Open(string path, int flags, out DiskFileHandle handle)
    {
        // Allocate the SafeHandle before the call that creates the fd, so nothing can fail between the two.
        handle = new DiskFileHandle();
        byte[] native = NativePath.ToNullTerminatedUtf8(path);
        int fd;
        fixed (byte* p = native)
            fd = LibC.open(p, flags);
        if (fd < 0) return LibC.errno;
        handle.Adopt(fd);
        return 0;
    }

    /// <summary>
    /// Takes a reference so the fd cannot be closed (and its number reused) during a request. False once the
    /// handle is closed. Pair every true with <see cref="Release"/>.
    /// </summary>
    public bool TryAcquire(out int fd)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
        }
        fd = added ? RawFd : -1;
        return added;
    }

    public void Release() => DangerousRelease();

    /// <summary>The fd for open-time calls the caller brackets itself (the handle is not shared yet).</summary>
    public int OpenTimeFd => RawFd;
}
