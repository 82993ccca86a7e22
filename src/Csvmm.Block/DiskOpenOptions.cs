namespace Csvmm.Block;

/// <summary>How the host caches a disk's data (QEMU's cache= values csvmm supports).</summary>
public enum DiskCacheMode
{
    /// <summary>Buffered I/O through the host page cache; a guest flush is fdatasync.</summary>
    Writeback,
    /// <summary>O_DIRECT: bypass the host page cache (still fdatasync on a guest flush, for the device's own cache).</summary>
    None,
}

/// <summary>What to open and how: the block layer's view of one <c>--disk</c> argument.</summary>
/// <param name="Path">The image or block device; symlinks are followed.</param>
/// <param name="ReadOnly">Open O_RDONLY and take a shared lock instead of an exclusive one.</param>
/// <param name="Cache">Buffered or O_DIRECT.</param>
internal sealed record DiskOpenOptions(string Path, bool ReadOnly = false, DiskCacheMode Cache = DiskCacheMode.Writeback)
{
    /// <summary>
    /// Receives one-line warnings about things that were degraded but not refused (O_DIRECT unsupported by the
    /// file system, image locking unsupported). Null: warnings are dropped.
    /// </summary>
    public Action<string>? Warn { get; init; }

    /// <summary>
    /// How messages name the disk instead of <see cref="Path"/>: set when <see cref="Path"/> is a
    /// <c>/proc/self/fd/N</c> reopen of a descriptor the SELinux gate checked (the user gave another path).
    /// Null: the path as given, plus "-> resolved path" when a symlink led elsewhere.
    /// </summary>
    public string? DisplayName { get; init; }

    /// <summary>Open without taking the image lock (<see cref="DiskLockMode.Handed"/>): a migration's destination,
    /// which takes it once the source has released it.</summary>
    public bool DeferLock { get; init; }
}
