using Csvmm.Memory;
using static Csvmm.Boot.Tests.TestMemory;

namespace Csvmm.Boot.Tests;

public sealed class BootCpuStateTests
{
    [Fact]
    public void Page_tables_identity_map_4_GiB_with_2_MiB_pages()
    {
        using var memory = Create(2 * MiB);
        memory.GetSpan(new GuestAddress(0x9000), 0x6000).Fill(0xEE); // stale contents must be cleared
        BootPageTables.Write(memory);

        Assert.Equal(0x9000UL, BootPageTables.Cr3.Value);
        Assert.Equal(0xA003UL, memory.Read<ulong>(new GuestAddress(0x9000)));
        Assert.Equal(0UL, memory.Read<ulong>(new GuestAddress(0x9008)));
        for (int i = 0; i < 4; i++)
            Assert.Equal(0xB003UL + (ulong)i * 0x1000, memory.Read<ulong>(new GuestAddress(0xA000 + (ulong)i * 8)));
        Assert.Equal(0UL, memory.Read<ulong>(new GuestAddress(0xA020)));

        for (ulong address = 0; address < 1UL << 32; address += 2 * MiB)
        {
            ulong pd = 0xB000 + (address >> 30) * 0x1000;
            ulong entry = memory.Read<ulong>(new GuestAddress(pd + ((address >> 21) & 511) * 8));
            Assert.Equal(address | 0x83, entry);
        }
    }

    [Fact]
    public void Gdt_holds_the_boot_segments_and_the_idt_is_empty()
    {
        using var memory = Create(2 * MiB);
        memory.GetSpan(new GuestAddress(0x500), 0x100).Fill(0xEE);
        BootGdt.Write(memory);

        Assert.Equal(0UL, memory.Read<ulong>(new GuestAddress(0x500)));
        Assert.Equal(0UL, memory.Read<ulong>(new GuestAddress(0x508)));
        Assert.Equal(0x00AF9B000000FFFFUL, memory.Read<ulong>(new GuestAddress(0x500 + 0x10)));
        Assert.Equal(0x00CF93000000FFFFUL, memory.Read<ulong>(new GuestAddress(0x500 + 0x18)));
        Assert.Equal(0x00CF9B000000FFFFUL, memory.Read<ulong>(new GuestAddress(0x500 + 0x20)));
        Assert.Equal(0x27, BootGdt.GdtLimit);
        Assert.Equal(0, BootGdt.IdtLimit);
        Assert.True(memory.GetSpan(Layout.BootIdt, BootGdt.IdtBytes).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Descriptors_decode_to_kvm_segment_fields()
    {
        var code64 = SegmentDescriptor.Decode(BootGdt.Code64Descriptor);
        Assert.Equal(new SegmentDescriptor(Base: 0, Limit: 0xFFFF_FFFF, Type: 0xB, Present: true, Dpl: 0, Db: false, S: true, L: true, G: true, Avl: false), code64);

        var data = SegmentDescriptor.Decode(BootGdt.DataDescriptor);
        Assert.Equal(new SegmentDescriptor(0, 0xFFFF_FFFF, 0x3, true, 0, Db: true, S: true, L: false, G: true, Avl: false), data);

        var code32 = SegmentDescriptor.Decode(BootGdt.Code32Descriptor);
        Assert.Equal(new SegmentDescriptor(0, 0xFFFF_FFFF, 0xB, true, 0, Db: true, S: true, L: false, G: true, Avl: false), code32);
    }

    [Fact]
    public void Decode_handles_base_byte_granular_limit_dpl_and_system_segments()
    {
        // base 0x12345678, limit 0x0ABCD (G=0), type 0x9 (available 64-bit TSS), S=0, DPL 3, P, AVL
        const ulong raw = 0x12_1_0_E9_345678_ABCDUL;
        Assert.Equal(new SegmentDescriptor(0x1234_5678, 0xABCD, 0x9, true, 3, false, false, false, false, true), SegmentDescriptor.Decode(raw));
    }

    [Fact]
    public void Selectors_match_their_descriptors()
    {
        Assert.Equal(BootGdt.Code64Descriptor, BootGdt.Descriptor(BootGdt.Code64Selector));
        Assert.Equal(BootGdt.DataDescriptor, BootGdt.Descriptor(BootGdt.DataSelector));
        Assert.Equal(BootGdt.Code32Descriptor, BootGdt.Descriptor(BootGdt.Code32Selector));
        Assert.Throws<ArgumentOutOfRangeException>(() => BootGdt.Descriptor(0x28));
    }

    [Fact]
    public void Control_registers_enable_long_mode()
    {
        Assert.Equal(0x8000_0011UL, BootControlRegisters.LongModeCr0);
        Assert.Equal(0x20UL, BootControlRegisters.LongModeCr4);
        Assert.Equal(0x500UL, BootControlRegisters.LongModeEfer);
        Assert.Equal(0x11UL, BootControlRegisters.ProtectedModeCr0);
    }
}
