using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>The image lock a disk holds.</summary>
public enum DiskLockMode
{
    /// <summary>No lock: the file system does not support OFD locks (a warning was given).</summary>
    None,
    /// <summary>F_RDLCK on the whole file: other readers may share the image, writers are refused.</summary>
    Shared,
    /// <summary>F_WRLCK on the whole file: every other user of the image is refused.</summary>
    Exclusive,
    /// <summary>Not held for now: not yet taken (a migration's destination, until the source hands the disk over) or
    /// released (a migration's source, after its last write); <see cref="RawDisk.AcquireLock"/> takes it.</summary>
    Handed,
}

/// <summary>
/// Image locking as QEMU and Cloud Hypervisor do it: an open-file-description (OFD) lock, F_OFD_SETLK, on the
/// whole file. OFD locks belong to the open file description, not the process, so two opens conflict even in one
/// process, and the lock goes away exactly when the fd is closed (or the process dies). A writable disk takes an
/// exclusive lock, a read-only disk a shared one.
/// </summary>
internal static unsafe class DiskLock
{
    private const int FOfdGetlk = 36, FOfdSetlk = 37;
    private const short FRdlck = 0, FWrlck = 1, FUnlck = 2, SeekSet = 0;

    /// <summary>
    /// Takes the lock on <paramref name="fd"/>. A conflict throws <see cref="DiskException"/>; a file system
    /// without OFD locks yields <see cref="DiskLockMode.None"/> and a warning.
    /// </summary>
    public static DiskLockMode Acquire(int fd, bool exclusive, string name, Action<string>? warn)
    {
        short type = exclusive ? FWrlck : FRdlck;
        // The holder can let go between our failed set and the query: try again a couple of times before giving up.
        for (int attempt = 0; ; attempt++)
        {
            Flock request = WholeFile(type);
            int err = DiskSyscalls.Fcntl(fd, FOfdSetlk, &request);
            if (err == 0) return exclusive ? DiskLockMode.Exclusive : DiskLockMode.Shared;

            if (err is Errno.Einval or Errno.Enolck or Errno.Eopnotsupp)
            {
                warn?.Invoke($"{name}: image locking is not supported here ({DiskValidation.DescribeOpenError(err, !exclusive)}); " +
                             "nothing stops another process from opening it for writing at the same time");
                return DiskLockMode.None;
            }
            if (err is not (Errno.Eagain or Errno.Eacces))
                throw new DiskException($"{name}: cannot lock the image: {DiskValidation.DescribeOpenError(err, !exclusive)}", err);

            bool? holderWrites = QueryHolder(fd, type);
            if (holderWrites is not null || attempt == 2)
                throw new DiskException(DiskValidation.LockConflict(name, holderWrites), err);
        }
    }

    /// <summary>Releases the lock on <paramref name="fd"/> (F_UNLCK on the whole file); 0 or an errno.</summary>
    public static int Release(int fd)
    {
        Flock request = WholeFile(FUnlck);
        return DiskSyscalls.Fcntl(fd, FOfdSetlk, &request);
    }

    /// <summary>True when the conflicting lock is a write lock, false for a read lock, null when none conflicts now.</summary>
    private static bool? QueryHolder(int fd, short wanted)
    {
        Flock probe = WholeFile(wanted);
        if (DiskSyscalls.Fcntl(fd, FOfdGetlk, &probe) != 0) return null;
        return probe.Type switch
        {
            FWrlck => true,
            FRdlck => false,
            _ => null, // FUnlck: released meanwhile
        };
    }

    private static Flock WholeFile(short type) => new() { Type = type, Whence = SeekSet, Start = 0, Length = 0, Pid = 0 };

    // Referenced by the tests that prove these values against <fcntl.h>.
    internal const int GetLockCommand = FOfdGetlk, SetLockCommand = FOfdSetlk;
    internal const short ReadLock = FRdlck, WriteLock = FWrlck, Unlock = FUnlck;
}
