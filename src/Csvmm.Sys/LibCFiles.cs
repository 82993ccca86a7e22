using System.Runtime.InteropServices;

namespace Csvmm.Sys;

/// <summary>
/// The x86-64 Linux <c>struct stat</c> (144 bytes) as glibc's fstat fills it; only the fields
/// csvmm reads are named. Offsets proven against &lt;sys/stat.h&gt; by a gcc-compiled test.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct LinuxStat
{
    [FieldOffset(0)] public ulong Dev;
    [FieldOffset(8)] public ulong Ino;
    [FieldOffset(24)] public uint Mode;
    [FieldOffset(28)] public uint Uid;
    [FieldOffset(32)] public uint Gid;
    [FieldOffset(48)] public long Size;
}

/// <summary>
/// The glibc functions the security layer needs (libc.so.6, x86-64 Linux): stdio for libsepol's policy reader,
/// free for its buffers, realpath/stat/fstat for file_contexts and the trust checks, the xattr reads for labels.
/// Internal: only the layers named in this project's InternalsVisibleTo reach them.
/// </summary>
internal static unsafe partial class LibCFiles
{
    private const string Lib = "libc.so.6";

    internal const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000,
        S_IFBLK = 0x6000, S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000;

    /// <summary>FILE *fopen(const char *path, const char *mode).</summary>
    [LibraryImport(Lib, EntryPoint = "fopen", SetLastError = true)]
    internal static partial nint FOpen(byte* path, byte* mode);

    /// <summary>int fclose(FILE *f).</summary>
    [LibraryImport(Lib, EntryPoint = "fclose")]
    internal static partial int FClose(nint file);

    /// <summary>int fileno(FILE *f).</summary>
    [LibraryImport(Lib, EntryPoint = "fileno")]
    internal static partial int FileNo(nint file);

    /// <summary>void free(void *p): for buffers libsepol and realpath malloc.</summary>
    [LibraryImport(Lib, EntryPoint = "free")]
    internal static partial void Free(void* pointer);

    /// <summary>char *realpath(const char *path, char *resolved /* NULL: malloc'd */).</summary>
    [LibraryImport(Lib, EntryPoint = "realpath", SetLastError = true)]
    internal static partial byte* RealPath(byte* path, byte* resolved);

    /// <summary>int fstat(int fd, struct stat *st) (an exported symbol since glibc 2.33).</summary>
    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    internal static partial int FStat(int fd, LinuxStat* stat);

    /// <summary>int stat(const char *path, struct stat *st).</summary>
    [LibraryImport(Lib, EntryPoint = "stat", SetLastError = true)]
    internal static partial int Stat(byte* path, LinuxStat* stat);

    /// <summary>ssize_t fgetxattr(int fd, const char *name, void *value, size_t size).</summary>
    [LibraryImport(Lib, EntryPoint = "fgetxattr", SetLastError = true)]
    internal static partial nint FGetXattr(int fd, byte* name, byte* value, nuint size);

    /// <summary>ssize_t getxattr(const char *path, const char *name, void *value, size_t size) (follows symlinks).</summary>
    [LibraryImport(Lib, EntryPoint = "getxattr", SetLastError = true)]
    internal static partial nint GetXattr(byte* path, byte* name, byte* value, nuint size);

    /// <summary>One-line text for an errno value, e.g. "No such file or directory".</summary>
    internal static string ErrorText(int errno) => Errno.Describe(errno);
}
