using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Tmds.Linux;

namespace Csvmm.Block.Tests;

/// <summary>Every way a --disk path can be unusable gives a one-line message naming it, before anything is used.</summary>
[SupportedOSPlatform("linux")]
public sealed class DiskOpenerTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private static DiskException Refused(string path, bool readOnly = false) =>
        Assert.Throws<DiskException>(() => DiskOpener.Open(path, readOnly).Dispose());

    [Fact]
    public void MissingFile()
    {
        string path = _scratch.PathOf("missing.img");
        DiskException e = Refused(path);
        Assert.Equal($"{path}: No such file or directory", e.Message);
        Assert.Equal(2, e.Errno);
    }

    [Fact]
    public void DanglingSymlinkIsMissing()
    {
        string link = _scratch.PathOf("dangling.img");
        File.CreateSymbolicLink(link, _scratch.PathOf("nowhere.img"));
        Assert.Equal($"{link}: No such file or directory", Refused(link).Message);
    }

    [Fact]
    public void DirectoryIsRefused()
    {
        Assert.Equal($"{_scratch.Dir}: is a directory, not a disk image", Refused(_scratch.Dir).Message);
        Assert.Equal($"{_scratch.Dir}: is a directory, not a disk image", Refused(_scratch.Dir, readOnly: true).Message);
    }

    [Fact]
    public void EmptyFile()
    {
        string path = _scratch.Image("empty.img", 0);
        Assert.Equal($"{path}: is empty (0 bytes)", Refused(path).Message);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(511)]
    [InlineData(4097)]
    public void SizeNotAMultipleOf512(int size)
    {
        string path = _scratch.Image("odd.img", size);
        Assert.Equal($"{path}: size {size} bytes is not a multiple of 512", Refused(path).Message);
        Assert.Equal(Scratch.Pattern(0, size), File.ReadAllBytes(path));
    }

    [Fact]
    public void CharacterDevice()
    {
        Assert.Equal("/dev/null: is a character device, not a disk image or block device", Refused("/dev/null").Message);
    }

    [Fact]
    public async Task FifoIsRefusedWithoutOpeningIt()
    {
        string path = _scratch.PathOf("pipe.img");
        MakeFifo(path);
        // Opening a FIFO for reading blocks until a writer comes; the opener must never get that far.
        Task<DiskException> refused = Task.Run(() => Refused(path, readOnly: true));
        Assert.Same(refused, await Task.WhenAny(refused, Task.Delay(TimeSpan.FromSeconds(5))));
        Assert.Equal($"{path}: is a FIFO, not a disk image or block device", (await refused).Message);
    }

    [Fact]
    public void MessagesShowWhereASymlinkLeads()
    {
        string target = _scratch.Image("real.img", 1000);
        string link = _scratch.PathOf("link.img");
        File.CreateSymbolicLink(link, target);
        Assert.Equal($"{link} -> {target}: size 1000 bytes is not a multiple of 512", Refused(link).Message);
    }

    [Fact]
    public void ASymlinkToAGoodImageOpensTheTarget()
    {
        string target = _scratch.Image("real.img", 4096);
        string link = _scratch.PathOf("link.img");
        File.CreateSymbolicLink(link, target);
        using RawDisk disk = DiskOpener.Open(link);
        Assert.Equal(target, disk.Path);
        Assert.StartsWith(target + " (raw image, 4096 bytes", disk.Describe);
    }

    [Fact]
    public void EmptyPathIsRefused()
    {
        Assert.Equal("disk path is empty", Refused("").Message);
    }

    /// <summary>
    /// Root reads anything, so as root this drops the thread's file-system uid (setfsuid is per thread, and
    /// leaving uid 0 clears CAP_DAC_OVERRIDE) to nobody's; as anyone else a chmod is enough.
    /// </summary>
    [Theory]
    [InlineData(true, "000", "Permission denied (cannot open it for reading)")]
    [InlineData(false, "444", "Permission denied (cannot open it for reading and writing; use readonly=on for a read-only image)")]
    public void UnreadableOrUnwritableFile(bool readOnly, string mode, string reason)
    {
        string path = _scratch.Image("locked-away.img", 4096);
        File.SetUnixFileMode(path, Convert.ToInt32(mode, 8) switch
        {
            0 => UnixFileMode.None,
            _ => UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
        });

        Exception? caught = null;
        var thread = new Thread(() =>
        {
            bool dropped = Scratch.IsRoot;
            if (dropped) SetFsUid(65534);
            try
            {
                DiskOpener.Open(path, readOnly).Dispose();
            }
            catch (Exception e)
            {
                caught = e;
            }
            finally
            {
                if (dropped) SetFsUid(0);
            }
        });
        thread.Start();
        thread.Join();

        DiskException refused = Assert.IsType<DiskException>(caught);
        Assert.Equal($"{path}: {reason}", refused.Message);
        Assert.Equal(13, refused.Errno);
    }

    [Fact]
    public void OpenedImagesAreCloseOnExec()
    {
        string path = _scratch.Image("cloexec.img", 4096);
        using RawDisk disk = DiskOpener.Open(path);
        // /proc/self/fd/N -> path for the disk's fd; its fdinfo flags (octal) must include O_CLOEXEC (02000000).
        string fd = System.IO.Directory.GetFiles("/proc/self/fd").Single(f => LinkTarget(f) == path);
        string flagsLine = File.ReadAllLines($"/proc/self/fdinfo/{Path.GetFileName(fd)}").Single(l => l.StartsWith("flags:"));
        long flags = Convert.ToInt64(flagsLine["flags:".Length..].Trim(), 8);
        Assert.NotEqual(0, flags & 0x80000);        // O_CLOEXEC
        Assert.Equal(0, flags & 0x800);             // O_NONBLOCK was cleared after the checks
        Assert.Equal(2, flags & 3);                 // O_RDWR
    }

    [Fact]
    public void DisplayNameAddsTheResolvedPathOnlyWhenItDiffers()
    {
        Assert.Equal("/a/b.img", DiskOpener.DisplayName("/a/b.img", "/a/b.img"));
        Assert.Equal("/a/b.img", DiskOpener.DisplayName("/a/b.img", null));
        Assert.Equal("b.img", DiskOpener.DisplayName("b.img", Path.GetFullPath("b.img")));
        Assert.Equal("/a/link.img -> /c/real.img", DiskOpener.DisplayName("/a/link.img", "/c/real.img"));
    }

    public static TheoryData<uint, DiskFileKind> Modes() => new()
    {
        { 0x81A4, DiskFileKind.RegularFile },     // -rw-r--r--
        { 0x61B0, DiskFileKind.BlockDevice },
        { 0x41ED, DiskFileKind.Directory },
        { 0x21B6, DiskFileKind.CharacterDevice },
        { 0x11A4, DiskFileKind.Fifo },
        { 0xC1ED, DiskFileKind.Socket },
        { 0xA1FF, DiskFileKind.Other },           // a symlink itself (statx follows them, so never seen in practice)
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void FileKindsComeFromTheModeBits(uint mode, DiskFileKind kind)
    {
        Assert.Equal(kind, DiskValidation.KindOf(mode));
        bool usable = kind is DiskFileKind.RegularFile or DiskFileKind.BlockDevice;
        Assert.Equal(usable, DiskValidation.CheckKind(kind) is null);
    }

    [Theory]
    [InlineData(0UL, "is empty (0 bytes)")]
    [InlineData(1UL, "size 1 bytes is not a multiple of 512")]
    [InlineData(1000UL, "size 1000 bytes is not a multiple of 512")]
    [InlineData(512UL, null)]
    [InlineData(1UL << 40, null)]
    [InlineData(ulong.MaxValue - 511, "size 18446744073709551104 bytes is too large")]
    public void SizeRules(ulong size, string? reason) => Assert.Equal(reason, DiskValidation.CheckSize(size));

    [Theory]
    [InlineData(2, false, "No such file or directory")]
    [InlineData(13, true, "Permission denied (cannot open it for reading)")]
    [InlineData(13, false, "Permission denied (cannot open it for reading and writing; use readonly=on for a read-only image)")]
    [InlineData(30, false, "Read-only file system (use readonly=on)")]
    [InlineData(21, false, "is a directory, not a disk image")]
    [InlineData(40, true, "Too many levels of symbolic links (errno 40)")]
    public void OpenErrorsInWords(int errno, bool readOnly, string reason) =>
        Assert.Equal(reason, DiskValidation.DescribeOpenError(errno, readOnly));

    /// <summary>Where /proc/self/fd/N points; null when that fd was closed meanwhile (other tests run in parallel).</summary>
    private static string? LinkTarget(string fdLink)
    {
        try
        {
            return File.ResolveLinkTarget(fdLink, false)?.FullName;
        }
        catch (IOException)
        {
            return null;
        }
    }

    [DllImport("libc.so.6", EntryPoint = "setfsuid")]
    private static extern int SetFsUid(uint uid);

    private static unsafe void MakeFifo(string path)
    {
        byte[] native = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = native)
            Assert.Equal(0, LibC.mkfifo(p, 0x1A4));
    }
}
