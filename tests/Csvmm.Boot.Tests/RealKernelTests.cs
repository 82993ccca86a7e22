using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

/// <summary>
/// Parses the tinyconfig kernel another part of the project builds into ~/.cache/csvmm/kernel-*/ (bzImage and
/// vmlinux). Skipped, with the reason, when it has not been built on this machine.
/// </summary>
public sealed class RealKernelTests
{
    private static string? FindKernelFile(string name)
    {
        string cache = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "csvmm");
        if (!Directory.Exists(cache)) return null;
        return Directory.GetDirectories(cache, "kernel-*")
            .Select(dir => Path.Combine(dir, name))
            .Where(File.Exists)
            .OrderByDescending(File.GetLastWriteTimeUtc)
            .FirstOrDefault();
    }

    [SkippableFact]
    public void Real_bzImage_loads()
    {
        string? path = FindKernelFile("bzImage");
        Skip.If(path is null, "no ~/.cache/csvmm/kernel-*/bzImage: the test kernel has not been built on this machine");

        var file = BootFile.Read(path!, KernelImage.MaxKernelBytes, "kernel");
        Assert.Equal(KernelFormat.BzImage, KernelImage.Detect(file.Bytes.Span));
        var header = SetupHeader.Parse(file.Bytes.Span, path!);
        Assert.True(header.Version >= SetupHeader.MinVersion);
        // syssize covers the protected-mode kernel; a signed kernel carries its signature after it
        Assert.InRange(header.DeclaredKernelSize, 1UL, (ulong)(file.Length - header.SetupSize));

        using var memory = Create(256 * MiB);
        var plan = KernelImage.Load(memory, file, new BootOptions
        {
            CommandLine = "console=ttyS0",
            Initrd = new BootFile("initrd", Pattern(0x10000, 1)),
            RsdpAddress = Layout.AcpiStart,
        });
        Assert.Equal(EntryMode.Linux64, plan.Mode);
        Assert.Equal(0x100200UL, plan.Entry.Value);
        Assert.True(plan.InitrdStart > plan.ImageEnd);
        Assert.Equal(0xFF, memory.Read<byte>(new GuestAddress(0x7000 + 0x210)));
    }

    [SkippableFact]
    public void Real_vmlinux_has_a_pvh_entry_and_loads()
    {
        string? path = FindKernelFile("vmlinux");
        Skip.If(path is null, "no ~/.cache/csvmm/kernel-*/vmlinux: the test kernel has not been built on this machine");

        var file = BootFile.Read(path!, KernelImage.MaxKernelBytes, "kernel");
        var elf = ElfImage.Parse(file.Bytes.Span, path!);
        Assert.NotNull(elf.PvhEntry);

        using var memory = Create(256 * MiB);
        var plan = KernelImage.Load(memory, file, new BootOptions { CommandLine = "console=ttyS0" });
        Assert.Equal(EntryMode.Pvh32, plan.Mode);
        Assert.Equal(elf.PvhEntry!.Value, plan.Entry.Value);
        Assert.Equal(0x336ec578u, memory.Read<uint>(new GuestAddress(0x6000)));
    }
}
