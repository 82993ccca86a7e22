using System.Runtime.InteropServices;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>Why a disk request failed. Devices map each kind to their own guest-visible error.</summary>
public enum DiskIoStatus : byte
{
    /// <summary>The whole request was carried out.</summary>
    Ok = 0,
    /// <summary>The range is not inside the disk (or offset + length wraps). Nothing was touched. ATA: IDNF; virtio-blk: IOERR.</summary>
    OutOfRange,
    /// <summary>A write, discard or write-zeroes on a read-only disk. Nothing was touched.</summary>
    ReadOnly,
    /// <summary>The backend cannot do this kind of request at all (virtio-blk: UNSUPP).</summary>
    Unsupported,
    /// <summary>The image ended before the request did (it shrank under the VM); the buffer is partly filled.</summary>
    EndOfFile,
    /// <summary>A host system call failed; <see cref="DiskIoResult.Errno"/> says which error.</summary>
    HostError,
    /// <summary>The backend has been disposed.</summary>
    Closed,
}

/// <summary>
/// The outcome of one disk request: a status and, for <see cref="DiskIoStatus.HostError"/>, the host errno.
/// Backends never throw from a request; a device turns a failed result into a guest-visible I/O error.
/// Eight bytes, no allocation.
/// </summary>
[StructLayout(LayoutKind.Auto)]
public readonly struct DiskIoResult : IEquatable<DiskIoResult>
{
    private DiskIoResult(DiskIoStatus status, int errno)
    {
        Status = status;
        Errno = errno;
    }

    public DiskIoStatus Status { get; }

    /// <summary>The host errno for <see cref="DiskIoStatus.HostError"/> (EIO, ENOSPC, ...), otherwise 0.</summary>
    public int Errno { get; }

    public bool IsOk => Status == DiskIoStatus.Ok;

    public static DiskIoResult Ok => default;
    public static DiskIoResult OutOfRange => new(DiskIoStatus.OutOfRange, 0);
    public static DiskIoResult ReadOnlyDisk => new(DiskIoStatus.ReadOnly, 0);
    public static DiskIoResult Unsupported => new(DiskIoStatus.Unsupported, 0);
    public static DiskIoResult EndOfFile => new(DiskIoStatus.EndOfFile, 0);
    public static DiskIoResult Closed => new(DiskIoStatus.Closed, 0);

    /// <summary>A failed host call. A non-positive <paramref name="errno"/> (a libc oddity) is reported as EIO.</summary>
    public static DiskIoResult Host(int errno) => new(DiskIoStatus.HostError, errno > 0 ? errno : Csvmm.Sys.Errno.Eio);

    public bool Equals(DiskIoResult other) => Status == other.Status && Errno == other.Errno;
    public override bool Equals(object? obj) => obj is DiskIoResult r && Equals(r);
    public override int GetHashCode() => HashCode.Combine(Status, Errno);
    public static bool operator ==(DiskIoResult a, DiskIoResult b) => a.Equals(b);
    public static bool operator !=(DiskIoResult a, DiskIoResult b) => !a.Equals(b);

    /// <summary>For logs (allocates; keep it off hot paths).</summary>
    public override string ToString() => Status switch
    {
        DiskIoStatus.Ok => "ok",
        DiskIoStatus.OutOfRange => "request past the end of the disk",
        DiskIoStatus.ReadOnly => "write to a read-only disk",
        DiskIoStatus.Unsupported => "request not supported by this disk",
        DiskIoStatus.EndOfFile => "image ended before the request (file shrank?)",
        DiskIoStatus.HostError => $"{Marshal.GetPInvokeErrorMessage(Errno)} (errno {Errno})",
        DiskIoStatus.Closed => "disk is closed",
        _ => Status.ToString(),
    };
}
