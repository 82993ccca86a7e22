using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class PvhLoaderTests
{
    private const ulong KernelAt = 16 * MiB;
    private const ulong Entry = KernelAt + 0x100;
    private static readonly byte[] Text = Pattern(0x2000, 9);

    /// <summary>A vmlinux-like image: an unrelated GNU note before the Xen note, one PT_LOAD with 0x1000 bytes of bss.</summary>
    private static byte[] Vmlinux(int noteSize = 8) => new ElfBuilder()
        .Notes(("GNU", 3, Pattern(20, 1)), ElfBuilder.PvhNote(Entry, noteSize))
        .Load(KernelAt, Text, 0x3000)
        .Build();

    private static BootPlan Load(GuestMemory memory, byte[] image, BootOptions? options = null) =>
        PvhLoader.Load(memory, new BootFile("vmlinux", image), options ?? new BootOptions());

    private static BootException Refused(byte[] image, ulong ram = 64 * MiB)
    {
        using var memory = Create(ram);
        return Assert.Throws<BootException>(() => Load(memory, image));
    }

    [Fact]
    public void Loads_segments_and_zeroes_bss()
    {
        using var memory = Create(64 * MiB);
        memory.GetSpan(new GuestAddress(KernelAt), 0x4000).Fill(0xAA); // bss must be cleared, the byte after it kept
        var plan = Load(memory, Vmlinux());

        Assert.Equal(EntryMode.Pvh32, plan.Mode);
        Assert.Equal(Entry, plan.Entry.Value);
        Assert.Equal(0x6000UL, plan.BootParameters.Value);
        Assert.Equal(KernelAt, plan.ImageStart.Value);
        Assert.Equal(KernelAt + 0x3000, plan.ImageEnd.Value);
        Assert.True(memory.GetSpan(new GuestAddress(KernelAt), Text.Length).SequenceEqual(Text));
        Assert.True(memory.GetSpan(new GuestAddress(KernelAt + 0x2000), 0x1000).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0xAA, memory.Read<byte>(new GuestAddress(KernelAt + 0x3000)));
    }

    [Fact]
    public void Writes_start_info_command_line_module_and_memory_map()
    {
        using var memory = Create(64 * MiB);
        var initrd = Pattern(0x5432, 3);
        var plan = Load(memory, Vmlinux(), new BootOptions
        {
            CommandLine = "console=ttyS0",
            Initrd = new BootFile("initrd.img", initrd),
            RsdpAddress = new GuestAddress(0xE0000),
        });

        var info = memory.Read<HvmStartInfo>(new GuestAddress(0x6000));
        Assert.Equal(0x336ec578u, info.Magic);
        Assert.Equal(1u, info.Version);
        Assert.Equal(0u, info.Flags);
        Assert.Equal(0x20000UL, info.CmdlinePaddr);
        Assert.Equal(0xE0000UL, info.RsdpPaddr);
        Assert.Equal(1u, info.NrModules);
        Assert.Equal(0x6040UL, info.ModlistPaddr);
        Assert.Equal(0x6080UL, info.MemmapPaddr);

        var module = memory.Read<HvmModlistEntry>(new GuestAddress(info.ModlistPaddr));
        ulong expectedInitrd = (64 * MiB - 0x5432) & ~0xFFFUL;
        Assert.Equal(expectedInitrd, module.Paddr);
        Assert.Equal(0x5432UL, module.Size);
        Assert.Equal(0UL, module.CmdlinePaddr);
        Assert.Equal(expectedInitrd, plan.InitrdStart.Value);
        Assert.True(memory.GetSpan(new GuestAddress(expectedInitrd), initrd.Length).SequenceEqual(initrd));

        (ulong, ulong, uint)[] expected =
        [
            (0, 0x9FC00, 1),
            (0x9FC00, 0x100000 - 0x9FC00, 2),
            (0x100000, 64 * MiB - 0x100000, 1),
            (0xFEFFC000, 0x4000, 2),
        ];
        Assert.Equal((uint)expected.Length, info.MemmapEntries);
        for (int i = 0; i < expected.Length; i++)
        {
            var e = memory.Read<HvmMemmapTableEntry>(new GuestAddress(info.MemmapPaddr + (ulong)(i * 24)));
            Assert.Equal(expected[i], (e.Addr, e.Size, e.Type));
            Assert.Equal(0u, e.Reserved);
        }

        var cmdline = memory.GetSpan(new GuestAddress(0x20000), 14);
        Assert.True(cmdline[..13].SequenceEqual("console=ttyS0"u8));
        Assert.Equal(0, cmdline[13]);
    }

    [Fact]
    public void Without_initrd_or_rsdp_the_fields_are_zero()
    {
        using var memory = Create(64 * MiB);
        Load(memory, Vmlinux());
        var info = memory.Read<HvmStartInfo>(new GuestAddress(0x6000));
        Assert.Equal(0u, info.NrModules);
        Assert.Equal(0UL, info.ModlistPaddr);
        Assert.Equal(0UL, info.RsdpPaddr);
        Assert.Equal(0, memory.Read<byte>(new GuestAddress(0x20000))); // empty, NUL-terminated command line
    }

    [Fact]
    public void Four_byte_entry_note_is_accepted()
    {
        using var memory = Create(64 * MiB);
        Assert.Equal(Entry, Load(memory, Vmlinux(noteSize: 4)).Entry.Value);
    }

    [Fact]
    public void Initrd_too_big_for_the_space_above_the_kernel_is_refused()
    {
        using var memory = Create(32 * MiB);
        var initrd = new BootFile("initrd.img", new byte[(int)(16 * MiB)]); // kernel ends at 16 MiB + 12 KiB
        var e = Assert.Throws<BootException>(() => Load(memory, Vmlinux(), new BootOptions { Initrd = initrd }));
        Assert.Contains("initrd.img: initrd of 16 MiB does not fit", e.Message);
    }

    [Fact]
    public void Missing_pvh_note_is_a_clear_error()
    {
        var image = new ElfBuilder().Notes(("GNU", 3, Pattern(20, 1))).Load(KernelAt, Text, 0x2000).Build();
        Assert.Equal("vmlinux: vmlinux has no PVH entry note (CONFIG_PVH)", Refused(image).Message);

        var noNotes = new ElfBuilder().Load(KernelAt, Text, 0x2000).Build();
        Assert.Contains("no PVH entry note", Refused(noNotes).Message);

        var wrongName = new ElfBuilder().Notes(("Xe", 18, new byte[8])).Load(KernelAt, Text, 0x2000).Build();
        Assert.Contains("no PVH entry note", Refused(wrongName).Message);
    }

    [Fact]
    public void Program_headers_beyond_the_file_are_refused()
    {
        var image = Vmlinux();
        FakeBzImage.U64(image, 32, (ulong)image.Length - 10);
        Assert.Contains("program headers at offset", Refused(image).Message);

        image = Vmlinux();
        FakeBzImage.U64(image, 32, ulong.MaxValue - 8); // phoff + table size overflows
        Assert.Contains("extend past the end of the file", Refused(image).Message);

        image = Vmlinux();
        FakeBzImage.U16(image, 56, 1000);
        Assert.Contains("1000 program headers", Refused(image).Message);
    }

    [Fact]
    public void Segment_offset_plus_size_overflowing_is_refused()
    {
        var image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 8), ulong.MaxValue - 0x10); // p_offset
        Assert.Contains("segment 1 (offset 0xffffffffffffffef, size 0x2000) extends past the end of the file", Refused(image).Message);

        image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 32), ulong.MaxValue); // p_filesz
        Assert.Contains("extends past the end of the file", Refused(image).Message);
    }

    [Fact]
    public void Segment_memsz_wrapping_is_refused()
    {
        var image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 40), ulong.MaxValue - 0x100); // p_memsz
        Assert.Contains("wraps around", Refused(image).Message);
    }

    [Fact]
    public void Filesz_larger_than_memsz_is_refused()
    {
        var image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 40), 0x1000);
        Assert.Contains("p_filesz 0x2000 larger than p_memsz 0x1000", Refused(image).Message);
    }

    [Fact]
    public void Segment_outside_ram_is_refused()
    {
        var e = Refused(Vmlinux(), ram: 16 * MiB);
        Assert.Contains("segment 1 [0x1000000, 0x1003000) is outside guest RAM", e.Message);

        var image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 24), 0xC000_0000 - 0x1000); // runs into the MMIO hole
        Assert.Contains("outside guest RAM", Refused(image, ram: 4096 * MiB).Message);
    }

    [Fact]
    public void Segment_in_the_low_boot_area_is_refused()
    {
        var image = Vmlinux();
        FakeBzImage.U64(image, ElfBuilder.Phdr(1, 24), 0x8000);
        Assert.Contains("overlaps the boot area below 1 MiB", Refused(image).Message);
    }

    [Fact]
    public void Entry_outside_the_loaded_segments_is_refused()
    {
        var image = new ElfBuilder().Notes(ElfBuilder.PvhNote(KernelAt + 0x2800)).Load(KernelAt, Text, 0x3000).Build();
        Assert.Contains("PVH entry 0x1002800 is not inside a loaded segment", Refused(image).Message);
    }

    [Fact]
    public void Note_running_past_its_segment_is_refused()
    {
        var image = Vmlinux();
        int notes = (int)BitConverter.ToUInt64(image, ElfBuilder.Phdr(0, 8));
        FakeBzImage.U32(image, notes, 0xFFFF_FFFF); // namesz of the first note
        Assert.Contains("a note in segment 0 (namesz 4294967295", Refused(image).Message);
    }

    [Fact]
    public void Bad_note_descriptor_size_is_refused()
    {
        var image = new ElfBuilder().Notes(("Xen", 18, new byte[6])).Load(KernelAt, Text, 0x3000).Build();
        Assert.Contains("descriptor is 6 bytes", Refused(image).Message);
    }

    [Theory]
    [InlineData(4, 1, "not a 64-bit ELF")]
    [InlineData(5, 2, "not a little-endian ELF")]
    [InlineData(18, 3, "not an x86-64 ELF (e_machine is 3)")]
    [InlineData(16, 3, "not an executable ELF (e_type is 3")]
    [InlineData(54, 32, "e_phentsize is 32")]
    public void Wrong_elf_header_fields_are_refused(int offset, byte value, string message)
    {
        var image = Vmlinux();
        image[offset] = value;
        Assert.Contains(message, Refused(image).Message);
    }

    [Fact]
    public void Every_truncation_is_refused()
    {
        var image = Vmlinux();
        using var memory = Create(64 * MiB);
        for (int cut = 0; cut < image.Length; cut++)
        {
            var e = Assert.Throws<BootException>(() => Load(memory, image[..cut]));
            Assert.StartsWith("vmlinux: ", e.Message);
        }
    }
}
