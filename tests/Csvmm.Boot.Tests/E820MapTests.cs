using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class E820MapTests
{
    private const ulong GiB = 1UL << 30;

    private static (ulong, ulong, E820Type)[] Entries(E820Map map) =>
        map.Entries.Select(e => (e.Address.Value, e.Size, e.Type)).ToArray();

    private static (ulong, ulong, E820Type)[] Expected(params (ulong, ulong, E820Type)[] tail) =>
    [
        (0, 0x9FC00, E820Type.Ram),
        (0x9FC00, 0x60400, E820Type.Reserved),
        .. tail,
    ];

    [Fact]
    public void Map_for_32_MiB()
    {
        using var memory = Create(32 * MiB);
        Assert.Equal(
            Expected((0x100000, 31 * MiB, E820Type.Ram), (0xFEFFC000, 0x4000, E820Type.Reserved)),
            Entries(E820Map.ForMemory(memory)));
    }

    [Fact]
    public void Map_for_3_GiB_ends_low_ram_at_the_mmio_hole()
    {
        var map = E820Map.ForRam([(GuestAddress.Zero, 3 * GiB)]);
        Assert.Equal(
            Expected((0x100000, 3 * GiB - MiB, E820Type.Ram), (0xFEFFC000, 0x4000, E820Type.Reserved)),
            Entries(map));
        Assert.Equal(3 * GiB - 0x60400, map.RamBytes);
    }

    [Fact]
    public void Map_for_6_GiB_puts_the_rest_above_4_GiB()
    {
        using var memory = Create(6 * GiB); // regions [0, 3 GiB) and [4 GiB, 7 GiB), mapped with MAP_NORESERVE
        Assert.Equal(
            Expected(
                (0x100000, 3 * GiB - MiB, E820Type.Ram),
                (0xFEFFC000, 0x4000, E820Type.Reserved),
                (4 * GiB, 3 * GiB, E820Type.Ram)),
            Entries(E820Map.ForMemory(memory)));
    }

    [Fact]
    public void Rom_above_1_MiB_is_reserved_and_adjacent_reserved_ranges_merge()
    {
        using var memory = Create(32 * MiB);
        memory.AddRegion(new GuestAddress(0xFF00_0000), 16 * MiB, "bios", readOnly: true);
        Assert.Equal(
            Expected((0x100000, 31 * MiB, E820Type.Ram), (0xFEFFC000, 0x4000 + 16 * MiB, E820Type.Reserved)),
            Entries(E820Map.ForMemory(memory)));
    }

    [Fact]
    public void Ram_split_at_640_KiB_and_1_MiB_gives_the_same_map()
    {
        var map = E820Map.ForRam([(new GuestAddress(0x100000), 31 * MiB), (GuestAddress.Zero, 0xA0000)]);
        Assert.Equal(
            Expected((0x100000, 31 * MiB, E820Type.Ram), (0xFEFFC000, 0x4000, E820Type.Reserved)),
            Entries(map));
    }

    [Fact]
    public void Ram_inside_the_mmio_hole_is_refused()
    {
        var e = Assert.Throws<BootException>(() => E820Map.ForRam([(GuestAddress.Zero, 4 * GiB)]));
        Assert.Contains("overlaps the 32-bit MMIO hole", e.Message);
    }

    [Fact]
    public void Add_keeps_entries_sorted_and_merges_adjacent_same_type()
    {
        var map = new E820Map();
        map.Add(new GuestAddress(0x3000), 0x1000, E820Type.Ram);
        map.Add(new GuestAddress(0x1000), 0x1000, E820Type.Ram);
        map.Add(new GuestAddress(0x2000), 0x1000, E820Type.Ram); // bridges both neighbours
        map.Add(new GuestAddress(0x4000), 0x1000, E820Type.Acpi);
        map.Add(GuestAddress.Zero, 0x1000, E820Type.Reserved);
        Assert.Equal(
            [(0UL, 0x1000UL, E820Type.Reserved), (0x1000UL, 0x3000UL, E820Type.Ram), (0x4000UL, 0x1000UL, E820Type.Acpi)],
            Entries(map));
    }

    [Theory]
    [InlineData(0x1800, 0x1000)] // overlaps the start
    [InlineData(0x0800, 0x1000)] // overlaps the end
    [InlineData(0x1400, 0x100)]  // inside
    [InlineData(0x0000, 0x4000)] // around
    public void Add_refuses_overlaps(ulong address, ulong size)
    {
        var map = new E820Map();
        map.Add(new GuestAddress(0x1000), 0x1000, E820Type.Ram);
        var e = Assert.Throws<BootException>(() => map.Add(new GuestAddress(address), size, E820Type.Reserved));
        Assert.Contains("overlaps", e.Message);
    }

    [Fact]
    public void Add_refuses_empty_and_wrapping_ranges()
    {
        var map = new E820Map();
        Assert.Contains("empty", Assert.Throws<BootException>(() => map.Add(new GuestAddress(0x1000), 0, E820Type.Ram)).Message);
        Assert.Contains("wraps", Assert.Throws<BootException>(() => map.Add(new GuestAddress(ulong.MaxValue - 0xFFF), 0x2000, E820Type.Ram)).Message);
        map.Add(new GuestAddress(ulong.MaxValue - 0xFFF), 0xFFF, E820Type.Reserved); // ends at 2^64 - 1: fine
        Assert.Equal(ulong.MaxValue, map.Entries[0].End);
    }
}
