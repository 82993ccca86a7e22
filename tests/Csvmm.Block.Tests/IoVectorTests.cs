using Csvmm.Block;
using Csvmm.Memory;

namespace Csvmm.Block.Tests;

/// <summary>An I/O vector can be made only over guest memory: inside one region, and never into ROM for a disk read.</summary>
public sealed unsafe class IoVectorTests : IDisposable
{
    private readonly GuestMemory _memory = new();
    private readonly GuestRegion _ram;
    private readonly GuestRegion _rom;

    public IoVectorTests()
    {
        _ram = _memory.AddRegion(new GuestAddress(0x10000), 0x10000, "ram");
        _rom = _memory.AddRegion(new GuestAddress(0xF0000), 0x10000, "rom", readOnly: true);
    }

    public void Dispose() => _memory.Dispose();

    [Fact]
    public void A_vector_inside_a_region_points_at_its_host_bytes()
    {
        Assert.True(IoVector.TryFromGuest(_memory, new GuestAddress(0x10100), 512, deviceWrites: true, out IoVector v));
        Assert.Equal((ulong)512, v.Length);
        Assert.Equal((nint)(_ram.HostAddress + 0x100), (nint)v.Address);
        v.AsSpan().Fill(0x5A);
        Assert.Equal(0x5A, _memory.GetSpan(new GuestAddress(0x102FF), 1)[0]);
    }

    [Theory]
    [InlineData(0x1FFFFul, 2)]            // one byte past the end of RAM
    [InlineData(0x20000ul, 1)]            // the gap between the regions
    [InlineData(0x0ul, 16)]               // below every region
    [InlineData(0xFFFF_FFFF_FFFF_FFF0ul, 0x20)] // address + length wraps around 2^64
    public void A_vector_outside_one_region_is_refused(ulong address, int length)
    {
        Assert.False(IoVector.TryFromGuest(_memory, new GuestAddress(address), length, deviceWrites: false, out IoVector v));
        Assert.Equal((ulong)0, v.Length);
    }

    [Fact]
    public void The_last_byte_of_a_region_is_in_and_a_negative_length_is_not()
    {
        Assert.True(IoVector.TryFromGuest(_memory, new GuestAddress(0x1FFFF), 1, deviceWrites: true, out _));
        Assert.False(IoVector.TryFromGuest(_memory, new GuestAddress(0x10000), -1, deviceWrites: false, out _));
    }

    [Fact]
    public void Rom_may_be_written_to_disk_but_never_filled_from_it()
    {
        Assert.True(IoVector.TryFromGuest(_memory, _rom.Start, 4096, deviceWrites: false, out _));
        Assert.False(IoVector.TryFromGuest(_memory, _rom.Start, 4096, deviceWrites: true, out _));
    }

    [Fact]
    public void Adjacent_vectors_join_and_others_do_not()
    {
        Assert.True(IoVector.TryFromGuest(_memory, new GuestAddress(0x10000), 4096, true, out IoVector a));
        Assert.True(IoVector.TryFromGuest(_memory, new GuestAddress(0x11000), 4096, true, out IoVector b));
        Assert.True(IoVector.TryFromGuest(_memory, new GuestAddress(0x13000), 4096, true, out IoVector c));
        Assert.True(IoVector.TryJoin(a, b, out IoVector ab));
        Assert.Equal((nint)a.Address, (nint)ab.Address);
        Assert.Equal((ulong)8192, ab.Length);
        Assert.False(IoVector.TryJoin(ab, c, out _));
        Assert.False(IoVector.TryJoin(b, a, out _)); // order matters: b does not end where a starts
    }
}
