using Csvmm.Memory;

namespace Csvmm.Memory.Tests;

/// <summary>
/// The bounds code every device relies on: a guest-supplied address and length reach host memory only when the
/// whole range lies inside one region, whatever the values (wrap-around, negative lengths, adjacent regions).
/// </summary>
public sealed class GuestMemoryTests : IDisposable
{
    private const ulong Page = 0x1000;
    private readonly GuestMemory _memory = new();

    public GuestMemoryTests()
    {
        _memory.AddRegion(new GuestAddress(0x10000), 4 * Page, "ram");
        _memory.AddRegion(new GuestAddress(0x14000), Page, "ram-next"); // adjacent: still two regions
        _memory.AddRegion(new GuestAddress(0xF0000), 0x10000, "rom", readOnly: true);
    }

    public void Dispose() => _memory.Dispose();

    [Theory]
    [InlineData(0x1000UL, 0UL)]            // empty
    [InlineData(0x1001UL, 0x1000UL)]       // unaligned start
    [InlineData(0x2000UL, 0x800UL)]        // unaligned size
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, 0x1000UL)] // would end at 2^64: wraps
    [InlineData(0x13000UL, 0x2000UL)]      // overlaps "ram" and "ram-next"
    [InlineData(0xE0000UL, 0x20000UL)]     // overlaps "rom"
    public void Bad_regions_are_refused_and_change_nothing(ulong start, ulong size)
    {
        var before = _memory.Regions.Select(r => r.ToString()).ToArray();
        Assert.Throws<GuestMemoryException>(() => _memory.AddRegion(new GuestAddress(start), size, "bad"));
        Assert.Equal(before, _memory.Regions.Select(r => r.ToString()));
    }

    [Fact]
    public void Regions_are_kept_sorted_and_ram_size_leaves_out_rom()
    {
        _memory.AddRegion(new GuestAddress(0), Page, "low");
        Assert.Equal(["low", "ram", "ram-next", "rom"], _memory.Regions.Select(r => r.Name));
        Assert.Equal(6 * Page, _memory.RamSize);
    }

    [Theory]
    [InlineData(0x10000UL, 0x4000, true)]   // the whole region
    [InlineData(0x13FFFUL, 1, true)]        // its last byte
    [InlineData(0x13FFFUL, 2, false)]       // one byte into the adjacent region: not one region
    [InlineData(0x0FFFFUL, 2, false)]       // starts below the region
    [InlineData(0x10000UL, 0x4001, false)]  // one byte too long
    [InlineData(0x10000UL, -1, false)]      // negative length
    [InlineData(0x15000UL, 1, false)]       // in no region
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL, 2, false)] // address + length wraps past 2^64
    [InlineData(0x10000UL, int.MaxValue, false)]
    public void A_span_exists_only_inside_one_region(ulong address, int length, bool expected)
    {
        Assert.Equal(expected, _memory.TryGetSpan(new GuestAddress(address), length, out var span));
        Assert.Equal(expected ? length : 0, span.Length);
        if (length >= 0) Assert.Equal(expected, _memory.IsValidRange(new GuestAddress(address), (ulong)length));
        if (!expected)
            Assert.Throws<GuestMemoryException>(() => _memory.GetSpan(new GuestAddress(address), length));
    }

    [Fact]
    public void A_region_never_contains_a_range_whose_length_exceeds_it_even_when_the_sum_wraps()
    {
        var rom = _memory.Regions.Single(r => r.Name == "rom");
        Assert.False(rom.Contains(new GuestAddress(0xF1000), ulong.MaxValue));
        Assert.False(rom.Contains(new GuestAddress(0xF1000), ulong.MaxValue - 0xF0FFF)); // F1000 + len wraps to 0
        Assert.True(rom.Contains(new GuestAddress(0xFFFFF), 1));
        Assert.False(rom.Contains(new GuestAddress(0x100000), 1));
    }

    [Fact]
    public void Reads_and_writes_land_where_they_say_and_nowhere_else()
    {
        var at = new GuestAddress(0x10FF8);
        _memory.Write(at, 0x1122_3344_5566_7788UL);
        Assert.Equal(0x1122_3344_5566_7788UL, _memory.Read<ulong>(at));
        Assert.Equal(0x88, _memory.GetSpan(at, 1)[0]); // little-endian, as the guest sees it
        Assert.Equal(0, _memory.Read<byte>(new GuestAddress(0x10FF7)));
        Assert.Equal(0, _memory.Read<byte>(new GuestAddress(0x11000)));

        _memory.WriteBytes(new GuestAddress(0x12000), [1, 2, 3]);
        Span<byte> back = stackalloc byte[3];
        _memory.ReadBytes(new GuestAddress(0x12000), back);
        Assert.Equal([1, 2, 3], back.ToArray());
        _memory.Fill(new GuestAddress(0x12000), 3, 0xAA);
        Assert.Equal([0xAA, 0xAA, 0xAA], _memory.GetSpan(new GuestAddress(0x12000), 3).ToArray());
        Assert.Equal(0, _memory.Read<byte>(new GuestAddress(0x12003)));
    }

    [Fact]
    public void An_access_that_crosses_into_the_adjacent_region_is_refused_whole()
    {
        var edge = new GuestAddress(0x13FFC);
        Assert.Throws<GuestMemoryException>(() => _memory.Write(edge, ulong.MaxValue));
        Assert.Equal(0u, _memory.Read<uint>(edge));                         // nothing half-written
        Assert.Equal(0u, _memory.Read<uint>(new GuestAddress(0x14000)));
    }

    [Fact]
    public void Rom_is_read_only_to_compare_exchange_and_misalignment_is_refused()
    {
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0xF0000), 0, 1, out _));
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0x10008), 0, 1, out _));
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0x15000), 0, 1, out _)); // in no region
        Assert.True(_memory.TryCompareExchange128(new GuestAddress(0x14000), 0, 7, out var previous));
        Assert.Equal(UInt128.Zero, previous);
        Assert.True(_memory.TryCompareExchange128(new GuestAddress(0x14000), 0, 9, out previous)); // fails: holds 7
        Assert.Equal((UInt128)7, previous);
        Assert.Equal(7UL, _memory.Read<ulong>(new GuestAddress(0x14000)));
    }

    [Fact]
    public void Disposed_memory_has_no_spans_and_takes_no_regions()
    {
        var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, Page, "ram");
        memory.Dispose();
        memory.Dispose(); // twice is harmless
        Assert.False(memory.TryGetSpan(GuestAddress.Zero, 1, out _));
        Assert.Empty(memory.Regions);
        Assert.Throws<ObjectDisposedException>(() => memory.AddRegion(new GuestAddress(Page), Page, "late"));
    }

    [Fact]
    public void Regions_are_zero_filled_anonymous_mappings()
    {
        var ram = _memory.Regions.Single(r => r.Name == "ram");
        Assert.NotEqual(0, ram.HostAddress);
        Assert.True(_memory.GetSpan(ram.Start, (int)ram.Size).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0, ram.HostAddress % (nint)Environment.SystemPageSize);
    }
}

/// <summary>Guest addresses never wrap silently.</summary>
public sealed class GuestAddressTests
{
    [Fact]
    public void Add_throws_on_overflow_and_TryAdd_says_so()
    {
        var top = new GuestAddress(ulong.MaxValue - 1);
        Assert.Equal(new GuestAddress(ulong.MaxValue), top + 1);
        Assert.Throws<GuestMemoryException>(() => top + 2);
        Assert.False(top.TryAdd(2, out _));
        Assert.True(top.TryAdd(1, out var r));
        Assert.Equal(ulong.MaxValue, r.Value);
    }

    [Fact]
    public void OffsetFrom_refuses_an_origin_above_the_address()
    {
        Assert.Equal(0x10UL, new GuestAddress(0x1010).OffsetFrom(new GuestAddress(0x1000)));
        Assert.Throws<GuestMemoryException>(() => new GuestAddress(0x1000).OffsetFrom(new GuestAddress(0x1010)));
    }

    [Fact]
    public void Ordering_and_text()
    {
        Assert.True(new GuestAddress(1) < new GuestAddress(2));
        Assert.True(new GuestAddress(2) >= new GuestAddress(2));
        Assert.Equal("0xfee00000", new GuestAddress(0xFEE0_0000).ToString());
        Assert.Equal(-1, GuestAddress.Zero.CompareTo(new GuestAddress(1)));
    }
}
