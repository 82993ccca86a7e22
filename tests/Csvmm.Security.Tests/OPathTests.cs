using System.Runtime.InteropServices;
using Csvmm.Security;
using Microsoft.Win32.SafeHandles;

namespace Csvmm.Security.Tests;

/// <summary>
/// The gate's intended use: open the disk with O_PATH|O_NOFOLLOW (neither reading nor writing),
/// label that descriptor, decide, and only then reopen it for I/O.
/// </summary>
public sealed partial class OPathTests : IDisposable
{
    private const int O_PATH = 0x200000, O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000;
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-opath-").FullName;

    [LibraryImport("libc.so.6", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    private static SafeFileHandle OpenPath(string path)
    {
        int fd = Open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        Assert.True(fd >= 0, $"open {path}: errno {Marshal.GetLastPInvokeError()}");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void O_path_descriptor_is_labelled_from_file_contexts_and_xattr()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "images"));
        string image = Path.Combine(_dir, "images", "a.img");
        File.WriteAllText(image, "x");
        Tool.RunChecked("python3", "-c", "import os,sys; os.setxattr(sys.argv[1], 'security.selinux', b'system_u:object_r:untrusted_disk_t')", image);
        var fc = FileContexts.Parse($"{_dir}/images(/.*)? -- system_u:object_r:qemu_virtdisk_t\n", "temp");

        using var handle = OpenPath(image);

        var mapped = fc.LookupOpened(handle);
        Assert.Equal(image, mapped.Path);
        Assert.Equal("system_u:object_r:qemu_virtdisk_t", mapped.Context); // the -- line applies: fstat on O_PATH works
        var xattr = DiskLabel.FromXattr(handle, image);
        Assert.Equal("system_u:object_r:untrusted_disk_t", xattr.Context);  // written without a NUL: still read whole
    }

    [Fact]
    public void O_nofollow_on_a_symlink_labels_the_link_not_its_target()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "images"));
        string target = Path.Combine(_dir, "images", "a.img");
        File.WriteAllText(target, "x");
        string link = Path.Combine(_dir, "link.img");
        File.CreateSymbolicLink(link, target);
        var fc = FileContexts.Parse($"{_dir}/images(/.*)? system_u:object_r:qemu_virtdisk_t\n", "temp");

        using var handle = OpenPath(link);

        // The descriptor is the link itself: it matches no line, so the caller must resolve links first
        // (FileContexts.LookupFile does) or refuse them.
        var label = fc.LookupOpened(handle);
        Assert.Equal(link, label.Path);
        Assert.Null(label.Context);
    }
}
