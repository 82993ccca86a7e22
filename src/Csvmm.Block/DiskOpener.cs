using Tmds.Linux;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>
/// The open-time system calls a test needs to make fail on demand (a root test process cannot be refused a
/// read by chmod; the test file systems here all take O_DIRECT). Everything else is called directly.
/// </summary>
internal interface IDiskHost
{
    /// <summary>open(2): 0 and a live handle, or the errno.</summary>
    int Open(string path, int flags, out DiskFileHandle handle);

    /// <summary>fcntl(F_SETFL): 0 or the errno.</summary>
    int SetStatusFlags(DiskFileHandle handle, int flags);
}

internal sealed class NativeDiskHost : IDiskHost
{
    public static readonly NativeDiskHost Instance = new();

    public int Open(string path, int flags, out DiskFileHandle handle) => DiskFileHandle.Open(path, flags, out handle);

    public int SetStatusFlags(DiskFileHandle handle, int flags) => DiskSyscalls.SetStatusFlags(handle.OpenTimeFd, flags);
}

/// <summary>
/// Turns a <c>--disk</c> path into a <see cref="RawDisk"/>, checking everything before the VM starts: each
/// failure is a <see cref="DiskException"/> with a one-line message that names the path.
/// </summary>
/// <remarks>
/// Order: the path is stat'ed first (following symlinks), so a directory, FIFO, socket or character device is
/// refused without ever being opened (opening some devices has side effects, and a FIFO open can block); then it
/// is opened O_CLOEXEC|O_NOCTTY|O_NONBLOCK (O_RDONLY or O_RDWR) and fstat'ed again, the fd's facts being the
/// ones that count; the size is checked (regular file: st_size; block device: BLKGETSIZE64); the OFD lock is
/// taken; finally F_SETFL clears O_NONBLOCK and, for cache=none, sets O_DIRECT. Messages show the path as given,
/// followed by "-> resolved path" when a symlink led elsewhere.
/// </remarks>
public static class DiskOpener
{
    /// <summary>
    /// Opens a disk the entrypoint gate admitted, through its checked descriptor (so the file opened is the file
    /// checked), and validates it; throws <see cref="DiskException"/> when it cannot be used. The only public way to
    /// open a disk: the machine gets no disk the gate did not decide on.
    /// </summary>
    /// <param name="deferLock">Open without the image lock (a migration's destination: the source still holds it);
    /// <see cref="RawDisk.AcquireLock"/> takes it later.</param>
    public static RawDisk Open(AdmittedDisk disk, bool readOnly, DiskCacheMode cache, Action<string>? warn = null, bool deferLock = false)
    {
        ArgumentNullException.ThrowIfNull(disk);
        return Open(new DiskOpenOptions(disk.ReopenPath, readOnly, cache) { Warn = warn, DisplayName = disk.GivenPath, DeferLock = deferLock }, NativeDiskHost.Instance);
    }

    /// <summary>Opens a path with no gate decision: the block layer's own tests only (and the gate's, through <see cref="AdmittedDisk"/>).</summary>
    internal static RawDisk Open(DiskOpenOptions options) => Open(options, NativeDiskHost.Instance);

    /// <summary>Shorthand for <see cref="Open(DiskOpenOptions)"/>.</summary>
    internal static RawDisk Open(string path, bool readOnly = false, DiskCacheMode cache = DiskCacheMode.Writeback, Action<string>? warn = null) =>
        Open(new DiskOpenOptions(path, readOnly, cache) { Warn = warn });

    internal static RawDisk Open(DiskOpenOptions options, IDiskHost host)
    {
        ArgumentNullException.ThrowIfNull(options);
        string path = options.Path;
        if (string.IsNullOrEmpty(path)) throw new DiskException("disk path is empty");
        if (path.Contains('\0')) throw new DiskException($"{path.Replace('\0', '?')}: the path contains a NUL character");
        bool readOnly = options.ReadOnly;

        int err = DiskSyscalls.StatPath(path, out StatX before);
        if (err != 0) throw new DiskException($"{options.DisplayName ?? path}: {DiskValidation.DescribeOpenError(err, readOnly)}", err);

        string? resolved = DiskSyscalls.RealPath(path);
        string name = options.DisplayName ?? DisplayName(path, resolved);
        Refuse(name, DiskValidation.CheckKind(DiskValidation.KindOf(before.Mode)));

        int flags = (readOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC | LibC.O_NOCTTY | LibC.O_NONBLOCK;
        err = host.Open(path, flags, out DiskFileHandle handle);
        if (err != 0)
        {
            handle.Dispose();
            throw new DiskException($"{name}: {DiskValidation.DescribeOpenError(err, readOnly)}", err);
        }

        try
        {
            int fd = handle.OpenTimeFd;
            err = DiskSyscalls.StatFd(fd, out StatX st);
            if (err != 0) throw new DiskException($"{name}: cannot stat the open image: {DiskValidation.DescribeOpenError(err, readOnly)}", err);
            if (!SameFile(before, st)) throw new DiskException($"{name}: was replaced while being opened");

            DiskFileKind kind = DiskValidation.KindOf(st.Mode);
            Refuse(name, DiskValidation.CheckKind(kind));
            ulong size = kind == DiskFileKind.BlockDevice ? BlockDeviceSize(fd, name) : st.Size;
            Refuse(name, DiskValidation.CheckSize(size));

            DiskLockMode lockMode = options.DeferLock ? DiskLockMode.Handed : DiskLock.Acquire(fd, exclusive: !readOnly, name, options.Warn);

            DirectIoAlignment direct = options.Cache == DiskCacheMode.None
                ? EnableDirectIo(host, handle, kind, st, size, name, options.Warn)
                : ClearNonBlocking(host, handle, name);

            return new RawDisk(handle, resolved ?? Path.GetFullPath(path), kind, size, readOnly, direct, lockMode);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static DirectIoAlignment ClearNonBlocking(IDiskHost host, DiskFileHandle handle, string name)
    {
        int err = host.SetStatusFlags(handle, 0);
        if (err != 0) throw new DiskException($"{name}: fcntl(F_SETFL) failed: {DiskValidation.DescribeOpenError(err, true)}", err);
        return DirectIoAlignment.Buffered;
    }

    /// <summary>
    /// Switches the open fd to O_DIRECT when the file system supports it and the image fits its alignment;
    /// otherwise warns and stays buffered. The alignment comes from BLKSSZGET for a block device; for a file
    /// from statx(STATX_DIOALIGN) (Linux 6.1+), or st_blksize (the conservative guess) where the kernel does not say.
    /// </summary>
    private static unsafe DirectIoAlignment EnableDirectIo(IDiskHost host, DiskFileHandle handle, DiskFileKind kind, in StatX st,
        ulong size, string name, Action<string>? warn)
    {
        uint offsetAlign, memoryAlign;
        string source;
        if (kind == DiskFileKind.BlockDevice)
        {
            int sector = 0;
            int err = DiskSyscalls.Ioctl(handle.OpenTimeFd, BlockIoctl.GetSectorSize, &sector);
            if (err != 0) throw new DiskException($"{name}: BLKSSZGET failed: {DiskValidation.DescribeOpenError(err, true)}", err);
            offsetAlign = memoryAlign = (uint)sector;
            source = "BLKSSZGET";
        }
        else if ((st.Mask & NativeConstants.StatxDioAlign) != 0)
        {
            offsetAlign = st.DioOffsetAlign;
            memoryAlign = st.DioMemAlign;
            source = "STATX_DIOALIGN";
        }
        else
        {
            offsetAlign = memoryAlign = st.BlockSize;
            source = "st_blksize";
        }

        string? why = null;
        if (offsetAlign == 0 || memoryAlign == 0)
            why = "the file system does not support O_DIRECT";
        else if (!DirectIoAlignment.IsUsable(offsetAlign) || !DirectIoAlignment.IsUsable(memoryAlign))
            why = $"its O_DIRECT alignment ({offsetAlign}/{memoryAlign} from {source}) is not usable";
        else if (size % offsetAlign != 0)
            why = $"its size is not a multiple of the O_DIRECT alignment {offsetAlign}";
        else
        {
            int err = host.SetStatusFlags(handle, LibC.O_DIRECT);
            if (err == 0) return new DirectIoAlignment(offsetAlign, memoryAlign, source);
            if (err != Errno.Einval)
                throw new DiskException($"{name}: cannot enable O_DIRECT: {DiskValidation.DescribeOpenError(err, true)}", err);
            why = "the file system refused O_DIRECT";
        }

        warn?.Invoke($"{name}: cache=none: {why}; using buffered I/O (as cache=writeback)");
        return ClearNonBlocking(host, handle, name);
    }

    private static unsafe ulong BlockDeviceSize(int fd, string name)
    {
        ulong size = 0;
        int err = DiskSyscalls.Ioctl(fd, BlockIoctl.GetSize64, &size);
        if (err != 0) throw new DiskException($"{name}: BLKGETSIZE64 failed: {DiskValidation.DescribeOpenError(err, true)}", err);
        return size;
    }

    private static bool SameFile(in StatX a, in StatX b) =>
        a.Inode == b.Inode && a.DevMajor == b.DevMajor && a.DevMinor == b.DevMinor && (a.Mode & 0xF000) == (b.Mode & 0xF000);

    private static void Refuse(string name, string? reason)
    {
        if (reason is not null) throw new DiskException($"{name}: {reason}");
    }

    /// <summary>The path as the user gave it, plus where it really leads when a symlink took it elsewhere.</summary>
    internal static string DisplayName(string path, string? resolved) =>
        resolved is null || resolved == Path.GetFullPath(path) ? path : $"{path} -> {resolved}";
}

/// <summary>How O_DIRECT requests must be aligned (both zero: the disk is buffered).</summary>
/// <param name="Offset">File offset and length alignment, bytes (a power of two).</param>
/// <param name="Memory">Buffer address alignment, bytes (a power of two).</param>
/// <param name="Source">Where the numbers came from: BLKSSZGET, STATX_DIOALIGN or st_blksize.</param>
public readonly record struct DirectIoAlignment(uint Offset, uint Memory, string Source)
{
    public static DirectIoAlignment Buffered => new(0, 0, "");

    public bool IsDirect => Offset != 0;

    /// <summary>A power of two no larger than 64 KiB (anything else is not a real device's requirement).</summary>
    internal static bool IsUsable(uint alignment) => alignment != 0 && (alignment & (alignment - 1)) == 0 && alignment <= 65536;
}
