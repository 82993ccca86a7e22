using System.Buffers.Binary;
using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class BzImageLoaderTests
{
    private const ulong ZeroPage = 0x7000;
    private const ulong SetupSize = (FakeBzImage.DefaultSetupSects + 1) * 512;

    private static BootPlan Load(GuestMemory memory, byte[] image, BootOptions? options = null) =>
        BzImageLoader.Load(memory, new BootFile("kernel.bin", image), options ?? new BootOptions());

    private static BootException Refused(byte[] image, ulong ram = 64 * MiB, BootOptions? options = null)
    {
        using var memory = Create(ram);
        return Assert.Throws<BootException>(() => Load(memory, image, options));
    }

    private static uint ZeroPageU32(GuestMemory m, int offset) => m.Read<uint>(new GuestAddress(ZeroPage + (ulong)offset));

    [Fact]
    public void Loads_kernel_zero_page_and_command_line()
    {
        using var memory = Create(64 * MiB);
        var image = FakeBzImage.Build();
        var plan = Load(memory, image, new BootOptions { CommandLine = "console=ttyS0 panic=-1", RsdpAddress = new GuestAddress(0xE0000) });

        Assert.Equal(EntryMode.Linux64, plan.Mode);
        Assert.Equal(0x100200UL, plan.Entry.Value);
        Assert.Equal(ZeroPage, plan.BootParameters.Value);
        Assert.Equal(0x100000UL, plan.ImageStart.Value);
        Assert.Equal(16 * MiB + FakeBzImage.DefaultInitSize, plan.ImageEnd.Value); // runtime start 16 MiB + init_size
        Assert.Equal(0UL, plan.InitrdSize);

        // the protected-mode kernel, byte for byte, at 1 MiB
        var loaded = memory.GetSpan(new GuestAddress(0x100000), FakeBzImage.DefaultPayload);
        Assert.True(loaded.SequenceEqual(image.AsSpan((int)SetupSize)));

        var zp = memory.GetSpan(new GuestAddress(ZeroPage), 4096);
        // setup header copied from the image (0x1F1 .. 0x26C), except the loader's fields
        Assert.Equal(0x5372_6448u, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x202..]));
        Assert.Equal(0x020F, BinaryPrimitives.ReadUInt16LittleEndian(zp[0x206..]));
        Assert.Equal(0xAA55, BinaryPrimitives.ReadUInt16LittleEndian(zp[0x1FE..]));
        Assert.Equal(FakeBzImage.DefaultInitSize, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x260..]));
        Assert.Equal(FakeBzImage.DefaultCmdlineSize, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x238..]));
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16LittleEndian(zp[0x1FA..]));
        // nothing outside the header is copied: the sentinel and the real-mode code stay zero
        Assert.Equal(0, zp[0x1EF]);
        Assert.Equal(0, zp[0x26C]);
        Assert.Equal(0, zp[0x100]);
        // loader fields
        Assert.Equal(0xFF, zp[0x210]);                                               // type_of_loader
        Assert.Equal(0x81, zp[0x211]);                                               // LOADED_HIGH | CAN_USE_HEAP
        Assert.Equal(0xFE00, BinaryPrimitives.ReadUInt16LittleEndian(zp[0x224..]));  // heap_end_ptr
        Assert.Equal(0x20000u, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x228..])); // cmd_line_ptr
        Assert.Equal(0x100000u, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x214..])); // code32_start
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x218..]));       // no ramdisk
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(zp[0x21C..]));
        Assert.Equal(0xE0000UL, BinaryPrimitives.ReadUInt64LittleEndian(zp[0x70..])); // acpi_rsdp_addr

        var cmdline = memory.GetSpan(new GuestAddress(0x20000), 23);
        Assert.True(cmdline[..22].SequenceEqual("console=ttyS0 panic=-1"u8));
        Assert.Equal(0, cmdline[22]);
    }

    [Fact]
    public void Zero_page_holds_the_e820_map()
    {
        using var memory = Create(64 * MiB);
        Load(memory, FakeBzImage.Build());
        var zp = memory.GetSpan(new GuestAddress(ZeroPage), 4096);

        (ulong, ulong, uint)[] expected =
        [
            (0, 0x9FC00, 1),
            (0x9FC00, 0x100000 - 0x9FC00, 2),
            (0x100000, 64 * MiB - 0x100000, 1),
            (0xFEFFC000, 0x4000, 2),
        ];
        Assert.Equal(expected.Length, zp[0x1E8]);
        for (int i = 0; i < expected.Length; i++)
        {
            var e = zp.Slice(0x2D0 + i * 20, 20);
            Assert.Equal(expected[i], (BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), BinaryPrimitives.ReadUInt32LittleEndian(e[16..])));
        }
        Assert.True(zp.Slice(0x2D0 + expected.Length * 20, 20).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void No_rsdp_leaves_acpi_rsdp_addr_zero()
    {
        using var memory = Create(64 * MiB);
        Load(memory, FakeBzImage.Build());
        Assert.Equal(0UL, memory.Read<ulong>(new GuestAddress(ZeroPage + 0x70)));
    }

    [Fact]
    public void Initrd_goes_page_aligned_at_the_top_of_low_ram()
    {
        using var memory = Create(64 * MiB);
        var initrd = Pattern(0x12345, 5);
        var plan = Load(memory, FakeBzImage.Build(), new BootOptions { Initrd = new BootFile("initrd.img", initrd) });

        ulong expected = (64 * MiB - 0x12345) & ~0xFFFUL;
        Assert.Equal(expected, plan.InitrdStart.Value);
        Assert.Equal(0UL, plan.InitrdStart.Value % 4096);
        Assert.Equal(0x12345UL, plan.InitrdSize);
        Assert.Equal((uint)expected, ZeroPageU32(memory, 0x218));
        Assert.Equal(0x12345u, ZeroPageU32(memory, 0x21C));
        Assert.True(memory.GetSpan(plan.InitrdStart, initrd.Length).SequenceEqual(initrd));
    }

    [Fact]
    public void Initrd_respects_initrd_addr_max()
    {
        using var memory = Create(256 * MiB);
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x22C, 0x27F_FFFF); // last byte may be at 40 MiB - 1
        var plan = Load(memory, image, new BootOptions { Initrd = new BootFile("initrd.img", Pattern(0x3000, 1)) });
        Assert.Equal(40 * MiB - 0x3000, plan.InitrdStart.Value);
    }

    [Fact]
    public void Initrd_that_does_not_fit_above_the_kernel_is_refused_and_nothing_is_written()
    {
        using var memory = Create(32 * MiB);
        // kernel runs at [16 MiB, 24 MiB): 8 MiB left above it
        var initrd = new BootFile("big-initrd.img", new byte[(int)(8 * MiB) + 1]);
        var e = Assert.Throws<BootException>(() => Load(memory, FakeBzImage.Build(), new BootOptions { Initrd = initrd }));
        Assert.Contains("big-initrd.img", e.Message);
        Assert.Contains("does not fit", e.Message);
        Assert.True(memory.GetSpan(new GuestAddress(0), (int)(32 * MiB)).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Initrd_that_exactly_fits_is_placed_right_after_the_kernel()
    {
        using var memory = Create(32 * MiB);
        var plan = Load(memory, FakeBzImage.Build(), new BootOptions { Initrd = new BootFile("initrd.img", new byte[8 * MiB]) });
        Assert.Equal(24 * MiB, plan.InitrdStart.Value);
    }

    [Fact]
    public void Kernel_whose_runtime_area_exceeds_ram_is_refused()
    {
        var e = Refused(FakeBzImage.Build(), ram: 20 * MiB);
        Assert.Contains("init_size", e.Message);
        Assert.Contains("give the guest more memory", e.Message);
    }

    [Fact]
    public void Non_relocatable_kernel_runs_at_pref_address()
    {
        using var memory = Create(64 * MiB);
        var image = FakeBzImage.Build();
        image[0x234] = 0;
        FakeBzImage.U64(image, 0x258, 0x200_0000);
        Assert.Equal(32 * MiB + FakeBzImage.DefaultInitSize, Load(memory, image).ImageEnd.Value);
    }

    [Fact]
    public void Command_line_up_to_cmdline_size_is_accepted_and_longer_is_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x238, 16);
        using (var memory = Create(64 * MiB))
            Load(memory, image, new BootOptions { CommandLine = new string('a', 16) });

        var e = Refused(image, options: new BootOptions { CommandLine = new string('a', 17) });
        Assert.Contains("command line is 17 bytes", e.Message);
        Assert.Contains("kernel.bin accepts at most 16", e.Message);
    }

    [Fact]
    public void Command_line_is_limited_by_the_buffer_even_if_the_kernel_allows_more()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x238, uint.MaxValue);
        var e = Refused(image, options: new BootOptions { CommandLine = new string('x', Layout.CmdlineMax) });
        Assert.Contains($"at most {Layout.CmdlineMax - 1}", e.Message);
    }

    [Fact]
    public void Command_line_with_a_nul_is_refused() =>
        Assert.Contains("NUL", Refused(FakeBzImage.Build(), options: new BootOptions { CommandLine = "a\0b" }).Message);

    [Fact]
    public void Every_truncation_is_refused_with_a_clear_message()
    {
        var image = FakeBzImage.Build(payload: 0x200);
        using var memory = Create(64 * MiB);
        for (int cut = 0; cut < image.Length; cut++)
        {
            var e = Assert.Throws<BootException>(() => Load(memory, image[..cut]));
            Assert.StartsWith("kernel.bin: ", e.Message);
            Assert.True(cut < 0x206 ? e.Message.Contains("too short") : e.Message.Contains("truncated"), $"cut {cut}: {e.Message}");
        }
        Load(memory, image); // and the whole image loads
    }

    [Fact]
    public void Missing_HdrS_magic_is_not_a_bzImage()
    {
        var image = FakeBzImage.Build();
        image[0x203] ^= 0xFF;
        Assert.Equal("kernel.bin: not a bzImage (no HdrS magic at 0x202)", Refused(image).Message);
    }

    [Fact]
    public void Bad_boot_flag_is_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U16(image, 0x1FE, 0x55AA);
        Assert.Contains("boot_flag is 0x55aa, expected 0xaa55", Refused(image).Message);
    }

    [Fact]
    public void Setup_sects_beyond_the_file_is_refused()
    {
        var image = FakeBzImage.Build(payload: 0x1000); // 0xA00 + 0x1000 bytes
        image[0x1F1] = 0xFF;                              // claims 128 KiB of setup code
        Assert.Contains("setup_sects = 255 means 131072 bytes of setup code", Refused(image).Message);
    }

    [Fact]
    public void Setup_sects_zero_means_four()
    {
        using var memory = Create(64 * MiB);
        var image = FakeBzImage.Build(setupSects: 0);
        Load(memory, image);
        Assert.Equal(FakeBzImage.PayloadByte(0), memory.Read<byte>(new GuestAddress(0x100000)));
        Assert.Equal(FakeBzImage.PayloadByte(1), memory.Read<byte>(new GuestAddress(0x100001)));
    }

    [Fact]
    public void Syssize_beyond_the_file_is_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x1F4, FakeBzImage.DefaultPayload / 16 + 1);
        Assert.Contains("syssize says the kernel is 16400 bytes but only 16384 follow", Refused(image).Message);
    }

    [Fact]
    public void Syssize_overflowing_32_bits_when_scaled_is_refused_not_wrapped()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x1F4, 0x1000_0001); // * 16 = 2^32 + 16: a 32-bit multiply would wrap to 16
        Assert.Contains("syssize", Refused(image).Message);
    }

    [Fact]
    public void Zero_syssize_is_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x1F4, 0);
        Assert.Contains("syssize is 0", Refused(image).Message);
    }

    [Theory]
    [InlineData(0x020B, "boot protocol 2.11 is too old")]
    [InlineData(0x0200, "boot protocol 2.00 is too old")]
    public void Old_protocol_is_refused(ushort version, string message)
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U16(image, 0x206, version);
        Assert.Contains(message, Refused(image).Message);
    }

    [Fact]
    public void Kernel_without_64_bit_entry_is_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U16(image, 0x236, 0x0002);
        Assert.Contains("XLF_KERNEL_64", Refused(image).Message);
    }

    [Fact]
    public void ZImage_is_refused()
    {
        var image = FakeBzImage.Build();
        image[0x211] = 0;
        Assert.Contains("LOADED_HIGH", Refused(image).Message);
    }

    [Theory]
    [InlineData(0x00)]
    [InlineData(0x61)] // ends at 0x263: misses init_size
    [InlineData(0x90)] // ends at 0x292: past the room boot_params has
    public void Corrupt_header_length_is_refused(byte rel8)
    {
        var image = FakeBzImage.Build();
        image[0x201] = rel8;
        Assert.Contains("the jump at 0x200", Refused(image).Message);
    }

    [Fact]
    public void Bad_kernel_alignment_and_init_size_are_refused()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x230, 0x30_0000);
        Assert.Contains("kernel_alignment 0x300000 is not a power of two", Refused(image).Message);

        image = FakeBzImage.Build();
        FakeBzImage.U32(image, 0x260, 0);
        Assert.Contains("init_size is 0", Refused(image).Message);
    }

    [Fact]
    public void Huge_pref_address_does_not_wrap()
    {
        var image = FakeBzImage.Build();
        FakeBzImage.U64(image, 0x258, ulong.MaxValue - 0x1000);
        Assert.Contains("give no runtime area", Refused(image).Message);
    }

    [Fact]
    public void Guest_without_ram_at_1_MiB_is_refused()
    {
        using var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, 0x80000, "tiny");
        var e = Assert.Throws<BootException>(() => Load(memory, FakeBzImage.Build()));
        Assert.Contains("no RAM at the kernel load address", e.Message);
    }
}
