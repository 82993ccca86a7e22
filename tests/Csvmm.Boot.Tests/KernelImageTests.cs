using System.Text;
using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class KernelImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-boot-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Vmlinux() => new ElfBuilder()
        .Notes(ElfBuilder.PvhNote(0x100_0000))
        .Load(0x100_0000, Pattern(0x1000, 1), 0x1000)
        .Build();

    [Fact]
    public void Detect_tells_formats_apart_by_magic()
    {
        Assert.Equal(KernelFormat.BzImage, KernelImage.Detect(FakeBzImage.Build()));
        Assert.Equal(KernelFormat.Elf, KernelImage.Detect(Vmlinux()));
        Assert.Equal(KernelFormat.Unknown, KernelImage.Detect([]));
        Assert.Equal(KernelFormat.Unknown, KernelImage.Detect("\x7fEL"u8));
        Assert.Equal(KernelFormat.Unknown, KernelImage.Detect(FakeBzImage.Build()[..0x205]));
        Assert.Equal(KernelFormat.Unknown, KernelImage.Detect(new byte[4096]));
    }

    [Fact]
    public void Load_dispatches_to_the_matching_loader()
    {
        using var memory = Create(64 * MiB);
        Assert.Equal(EntryMode.Linux64, KernelImage.Load(memory, new BootFile("bz", FakeBzImage.Build()), new BootOptions()).Mode);
        Assert.Equal(EntryMode.Pvh32, KernelImage.Load(memory, new BootFile("elf", Vmlinux()), new BootOptions()).Mode);
    }

    [Fact]
    public void Text_file_gives_a_clear_error()
    {
        using var memory = Create(64 * MiB);
        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("#!/bin/sh\necho this is not a kernel\n", 40)));
        var e = Assert.Throws<BootException>(() => KernelImage.Load(memory, new BootFile("kernel.txt", text), new BootOptions()));
        Assert.Equal("kernel.txt: neither a bzImage nor an ELF vmlinux (no HdrS magic at 0x202, no \\x7fELF magic) (it looks like a text file)", e.Message);
    }

    [Fact]
    public void Binary_garbage_gives_the_error_without_the_text_hint()
    {
        using var memory = Create(64 * MiB);
        var e = Assert.Throws<BootException>(() => KernelImage.Load(memory, new BootFile("kernel.bin", Pattern(8192, 0)), new BootOptions()));
        Assert.Equal("kernel.bin: neither a bzImage nor an ELF vmlinux (no HdrS magic at 0x202, no \\x7fELF magic)", e.Message);
    }

    [Fact]
    public void LoadFiles_reads_kernel_and_initrd()
    {
        using var memory = Create(64 * MiB);
        string kernel = WriteFile("bzImage", FakeBzImage.Build());
        string initrd = WriteFile("initrd.img", Pattern(0x2000, 4));
        var plan = KernelImage.LoadFiles(memory, kernel, initrd, "quiet", Layout.AcpiStart);
        Assert.Equal(0x2000UL, plan.InitrdSize);
        Assert.True(memory.GetSpan(plan.InitrdStart, 0x2000).SequenceEqual(Pattern(0x2000, 4)));
    }

    [Fact]
    public void LoadFiles_names_the_file_in_errors()
    {
        using var memory = Create(32 * MiB);
        string missing = Path.Combine(_dir, "nope");
        Assert.Equal($"{missing}: kernel file not found", Assert.Throws<BootException>(() => KernelImage.LoadFiles(memory, missing, null, "", null)).Message);

        string empty = WriteFile("empty", []);
        Assert.Equal($"{empty}: kernel file is empty", Assert.Throws<BootException>(() => KernelImage.LoadFiles(memory, empty, null, "", null)).Message);

        string kernel = WriteFile("bzImage", FakeBzImage.Build());
        string huge = Path.Combine(_dir, "huge-initrd");
        using (var f = File.Create(huge)) f.SetLength((long)(33 * MiB)); // sparse
        var e = Assert.Throws<BootException>(() => KernelImage.LoadFiles(memory, kernel, huge, "", null));
        Assert.Equal($"{huge}: initrd file is 33 MiB, more than the 32 MiB of guest RAM", e.Message);

        string directory = Path.Combine(_dir, "a-directory");
        Directory.CreateDirectory(directory);
        Assert.Equal($"{directory}: kernel file is a directory", Assert.Throws<BootException>(() => KernelImage.LoadFiles(memory, directory, null, "", null)).Message);
    }

    [Fact]
    public void LoadFiles_refuses_kernels_above_the_size_cap_before_reading_them()
    {
        using var memory = Create(32 * MiB);
        string huge = Path.Combine(_dir, "huge-kernel");
        using (var f = File.Create(huge)) f.SetLength(KernelImage.MaxKernelBytes + 1); // sparse: never read
        var e = Assert.Throws<BootException>(() => KernelImage.LoadFiles(memory, huge, null, "", null));
        Assert.Equal($"{huge}: kernel file is 512.0 MiB, more than the 512 MiB limit", e.Message);
    }
}
