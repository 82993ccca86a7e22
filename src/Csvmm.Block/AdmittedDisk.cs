using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace Csvmm.Block;

/// <summary>
/// A <c>--disk</c> path opened <c>O_PATH</c> for the entrypoint gate: a descriptor that names the file (symlinks
/// followed) but grants no access to its contents. The gate labels THIS descriptor and decides; an admitted disk is
/// later reopened through <c>/proc/self/fd/N</c>, so the file used is the file checked, whatever happened to the path.
/// </summary>
public sealed class DiskCandidate : IDisposable
{
    private readonly SafeFileHandle _handle;

    private DiskCandidate(string givenPath, SafeFileHandle handle)
    {
        GivenPath = givenPath;
        _handle = handle;
        ReopenPath = $"/proc/self/fd/{(int)handle.DangerousGetHandle()}";
    }

    /// <summary>The path as the user gave it (how messages name the disk).</summary>
    public string GivenPath { get; }

    /// <summary>The O_PATH descriptor (labels are read from it; it cannot read or write the disk's contents).</summary>
    public SafeFileHandle Handle => _handle;

    /// <summary><c>/proc/self/fd/N</c>: opening it opens the very file that was checked.</summary>
    public string ReopenPath { get; }

    /// <summary>Where the descriptor really leads (its /proc link), or the given path when that cannot be read.</summary>
    public string RealPath
    {
        get
        {
            try
            {
                return new FileInfo(ReopenPath).LinkTarget ?? GivenPath;
            }
            catch (IOException)
            {
                return GivenPath;
            }
        }
    }

    /// <summary>
    /// open(path, O_PATH|O_CLOEXEC), then refuses from fstat of that descriptor what cannot be a disk (a directory,
    /// FIFO, socket, character device, an empty or oversized file). Throws <see cref="DiskException"/> with a one-line
    /// message naming the path.
    /// </summary>
    public static DiskCandidate Open(string path)
    {
        if (string.IsNullOrEmpty(path)) throw new DiskException("disk path is empty");
        if (path.Contains('\0')) throw new DiskException($"{path.Replace('\0', '?')}: the path contains a NUL character");
        var handle = new SafeFileHandle(); // allocated before the fd exists, so nothing can fail between the two
        int fd = OpenPathOnly(path, out int errno);
        if (fd < 0)
        {
            handle.Dispose();
            throw new DiskException($"{path}: {DiskValidation.DescribeOpenError(errno, readOnly: true)}", errno);
        }
        Marshal.InitHandle(handle, fd);
        try
        {
            if (FileStat(fd, out uint mode, out long size) is int statErr and not 0)
                throw new DiskException($"{path}: cannot stat it: {DiskValidation.DescribeOpenError(statErr, readOnly: true)}", statErr);
            DiskFileKind kind = DiskValidation.KindOf(mode);
            if (DiskValidation.CheckKind(kind) is { } badKind)
                throw new DiskException($"{path}: {badKind}");
            // A block device's size needs an ioctl on a real descriptor: DiskOpener checks it after the gate.
            if (kind == DiskFileKind.RegularFile && DiskValidation.CheckSize(unchecked((ulong)size)) is { } badSize)
                throw new DiskException($"{path}: {badSize}");
            return new DiskCandidate(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();

    private static unsafe int OpenPathOnly(string path, out int errno)
    {
        byte[] native = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        // Safe: `native` is pinned for the call and NUL-terminated; open(2) only reads it.
        fixed (byte* p = native)
        {
            int fd = LibC.open(p, LibC.O_PATH | LibC.O_CLOEXEC);
            errno = fd < 0 ? LibC.errno : 0;
            return fd;
        }
    }

    private static unsafe int FileStat(int fd, out uint mode, out long size)
    {
        stat st;
        // Safe: `st` is a local the kernel fills; fd is open for the duration (the caller holds its handle).
        if (LibC.fstat(fd, &st) != 0)
        {
            mode = 0;
            size = 0;
            return LibC.errno;
        }
        mode = (uint)st.st_mode;
        size = st.st_size;
        return 0;
    }
}

/// <summary>
/// A disk the SELinux entrypoint gate admitted for this VM: the only thing <see cref="DiskOpener.Open(AdmittedDisk, bool, DiskCacheMode, Action{string}?)"/>
/// accepts. It can be created only inside the gate (Csvmm.Security, the sole assembly this one's internals are visible to
/// besides its tests), so a disk the gate did not decide on cannot reach the machine. It reopens the checked O_PATH
/// descriptor; disposing it closes that descriptor (the opened disk keeps its own).
/// </summary>
public sealed class AdmittedDisk : IDisposable
{
    private readonly DiskCandidate _candidate;

    internal AdmittedDisk(DiskCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        _candidate = candidate;
    }

    /// <summary>The path as the user gave it.</summary>
    public string GivenPath => _candidate.GivenPath;

    /// <summary>The /proc/self/fd path of the checked descriptor.</summary>
    internal string ReopenPath => _candidate.ReopenPath;

    /// <inheritdoc/>
    public void Dispose() => _candidate.Dispose();
}
