using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class FirmwareLoaderTests
{
    private static BootFile Bios(int size) => new("bios.bin", Pattern(size, 7));

    [Theory]
    [InlineData(0, "bios.bin: firmware file is empty")]
    [InlineData(1000, "bios.bin: firmware is 1000 bytes, not a multiple of 64 KiB")]
    [InlineData(17 << 20, "bios.bin: firmware is 17 MiB, more than the 16 MiB limit")]
    [InlineData((64 << 10) + 512, "not a multiple of 64 KiB")]
    public void Bad_sizes_are_refused(int size, string message)
    {
        var e = Assert.Throws<BootException>(() => FirmwareLoader.Parse(Bios(size)));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData(64 << 10, 0xFFFF_0000UL, 0xF0000UL, 64 << 10, 0)]
    [InlineData(128 << 10, 0xFFFE_0000UL, 0xE0000UL, 128 << 10, 0)]
    [InlineData(256 << 10, 0xFFFC_0000UL, 0xE0000UL, 128 << 10, 128 << 10)]
    [InlineData(16 << 20, 0xFF00_0000UL, 0xE0000UL, 128 << 10, (16 << 20) - (128 << 10))]
    public void Regions_end_at_4_GiB_and_1_MiB(int size, ulong romStart, ulong aliasStart, int aliasSize, int aliasOffset)
    {
        var image = FirmwareLoader.Parse(Bios(size));
        Assert.Equal(new FirmwareRegion(new GuestAddress(romStart), (ulong)size, 0), image.HighRom);
        Assert.Equal(new FirmwareRegion(new GuestAddress(aliasStart), (ulong)aliasSize, aliasOffset), image.LowAlias);
        Assert.Equal(0x1_0000_0000UL, image.HighRom.End);
        Assert.Equal(0x100000UL, image.LowAlias.End);
    }

    [Fact]
    public void CopyTo_fills_rom_and_low_alias_and_plans_the_reset_vector()
    {
        var bytes = Pattern(256 << 10, 7);
        var image = FirmwareLoader.Parse(new BootFile("bios.bin", bytes));
        using var memory = Create(2 * MiB);
        memory.AddRegion(image.HighRom.Start, image.HighRom.Size, "bios", readOnly: true);

        var plan = image.CopyTo(memory);

        Assert.Equal(EntryMode.RealModeReset, plan.Mode);
        Assert.Equal(0xFFFF_FFF0UL, plan.Entry.Value);
        Assert.Equal(0UL, plan.BootParameters.Value);
        Assert.True(memory.GetSpan(new GuestAddress(0xFFFC_0000), bytes.Length).SequenceEqual(bytes));
        Assert.True(memory.GetSpan(new GuestAddress(0xE0000), 128 << 10).SequenceEqual(bytes.AsSpan(128 << 10)));
        // the reset vector shows the image's last 16 bytes in both places
        Assert.Equal(bytes[^16], memory.Read<byte>(new GuestAddress(0xFFFF_FFF0)));
        Assert.Equal(bytes[^16], memory.Read<byte>(new GuestAddress(0xFFFF0)));
    }

    [Fact]
    public void CopyTo_without_a_rom_region_is_refused()
    {
        var image = FirmwareLoader.Parse(Bios(128 << 10));
        using var memory = Create(2 * MiB);
        var e = Assert.Throws<BootException>(() => image.CopyTo(memory));
        Assert.Contains("no guest region is mapped for the firmware ROM [0xfffe0000, 0x100000000)", e.Message);
    }

    [Fact]
    public void Read_reports_missing_files_by_name()
    {
        var e = Assert.Throws<BootException>(() => FirmwareLoader.Read("/nonexistent/bios.bin"));
        Assert.Equal("/nonexistent/bios.bin: firmware file not found", e.Message);
    }
}
