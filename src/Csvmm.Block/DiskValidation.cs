using System.Runtime.InteropServices;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>What a path turned out to be, from its st_mode.</summary>
public enum DiskFileKind { RegularFile, BlockDevice, Directory, CharacterDevice, Fifo, Socket, Other }

/// <summary>
/// The rules a disk path must pass, as pure functions of facts about it (kind, size, errno), so every message
/// is table-tested without needing the file system to misbehave. Each reason is the text after "path: ".
/// </summary>
public static class DiskValidation
{
    /// <summary>The guest-visible sector size every image size must be a multiple of.</summary>
    public const int SectorSize = 512;

    public static DiskFileKind KindOf(uint mode) => (mode & 0xF000) switch
    {
        0x8000 => DiskFileKind.RegularFile,
        0x6000 => DiskFileKind.BlockDevice,
        0x4000 => DiskFileKind.Directory,
        0x2000 => DiskFileKind.CharacterDevice,
        0x1000 => DiskFileKind.Fifo,
        0xC000 => DiskFileKind.Socket,
        _ => DiskFileKind.Other,
    };

    /// <summary>Null when a disk can live in a file of this kind; otherwise why not.</summary>
    public static string? CheckKind(DiskFileKind kind) => kind switch
    {
        DiskFileKind.RegularFile or DiskFileKind.BlockDevice => null,
        DiskFileKind.Directory => "is a directory, not a disk image",
        DiskFileKind.CharacterDevice => "is a character device, not a disk image or block device",
        DiskFileKind.Fifo => "is a FIFO, not a disk image or block device",
        DiskFileKind.Socket => "is a socket, not a disk image or block device",
        _ => "is not a regular file or block device",
    };

    /// <summary>Null when <paramref name="size"/> is a usable disk size; otherwise why not.</summary>
    public static string? CheckSize(ulong size)
    {
        if (size == 0) return "is empty (0 bytes)";
        if (size % SectorSize != 0) return $"size {size} bytes is not a multiple of {SectorSize}";
        if (size > long.MaxValue) return $"size {size} bytes is too large";
        return null;
    }

    /// <summary>Why open(2) or stat(2) of the path failed with <paramref name="errno"/>, in words a user can act on.</summary>
    public static string DescribeOpenError(int errno, bool readOnly) => errno switch
    {
        Errno.Enoent => "No such file or directory",
        Errno.Eacces when readOnly => "Permission denied (cannot open it for reading)",
        Errno.Eacces or Errno.Eperm => "Permission denied (cannot open it for reading and writing; use readonly=on for a read-only image)",
        Errno.Erofs => "Read-only file system (use readonly=on)",
        Errno.Eisdir => "is a directory, not a disk image",
        Errno.Etxtbsy => "Text file busy (it is being executed)",
        _ => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})",
    };

    /// <summary>The message for an image another open file description holds a conflicting lock on.</summary>
    /// <param name="name">The path as shown to the user.</param>
    /// <param name="holderWrites">True/false when the holder's lock is known to be for writing/reading; null when it went away meanwhile.</param>
    public static string LockConflict(string name, bool? holderWrites) =>
        $"{name} is in use by another process{(holderWrites switch { true => " (locked for writing)", false => " (locked for reading)", null => "" })}; " +
        "use readonly=on on both sides, or stop the other VM";
}
