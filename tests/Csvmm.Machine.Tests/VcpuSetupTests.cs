using Csvmm.Boot;
using Csvmm.Kvm;

using Csvmm.Machine.X86;

namespace Csvmm.Machine.Tests;

/// <summary><see cref="VcpuSetup"/>: GDT descriptors to kvm_segment, and the direct-boot register states.</summary>
public sealed class VcpuSetupTests
{
    [Fact]
    public void BootCode64DescriptorIsAFlatLongModeCodeSegment()
    {
        KvmSegment s = VcpuSetup.SegmentFromDescriptor(BootGdt.Code64Descriptor, BootGdt.Code64Selector);

        Assert.Equal((0UL, 0xFFFF_FFFFu, BootGdt.Code64Selector), (s.@base, s.limit, s.selector));
        Assert.Equal(0xB, s.type);
        Assert.Equal((1, 1, 0, 1, 0, 1, 0, 0), (s.present, s.s, s.dpl, s.l, s.db, s.g, s.avl, s.unusable));
    }

    [Fact]
    public void BootDataDescriptorIsAFlatWritableSegment()
    {
        KvmSegment s = VcpuSetup.SegmentFromDescriptor(BootGdt.DataDescriptor, BootGdt.DataSelector);

        Assert.Equal((0UL, 0xFFFF_FFFFu, BootGdt.DataSelector), (s.@base, s.limit, s.selector));
        Assert.Equal(0x3, s.type);
        Assert.Equal((1, 1, 0, 0, 1, 1, 0, 0), (s.present, s.s, s.dpl, s.l, s.db, s.g, s.avl, s.unusable));
    }

    [Fact]
    public void BootCode32DescriptorIsAFlat32BitCodeSegment()
    {
        KvmSegment s = VcpuSetup.SegmentFromDescriptor(BootGdt.Code32Descriptor, BootGdt.Code32Selector);

        Assert.Equal((0UL, 0xFFFF_FFFFu, BootGdt.Code32Selector), (s.@base, s.limit, s.selector));
        Assert.Equal(0xB, s.type);
        Assert.Equal((1, 1, 0, 0, 1, 1, 0), (s.present, s.s, s.dpl, s.l, s.db, s.g, s.unusable));
    }

    [Fact]
    public void NullDescriptorIsUnusable()
    {
        KvmSegment s = VcpuSetup.SegmentFromDescriptor(BootGdt.Descriptor(0), 0);

        Assert.Equal(0, s.present);
        Assert.Equal(1, s.unusable);
    }

    [Theory]
    [InlineData(0x00CF_9B00_0000_FFFFUL)]
    [InlineData(0x00AF_9B00_0000_FFFFUL)]
    [InlineData(0x1240_F356_7800_ABCDUL)]  // base 0x12567800, byte-granular limit 0xABCD, DPL 3 32-bit data
    [InlineData(0xFF9A_FBCD_EF01_2345UL)]  // G, AVL, DPL 3 code, base 0xFFCDEF01, limit 0xA2345 pages
    [InlineData(0x0000_8900_1000_0067UL)]  // 64-bit TSS low half (system descriptor, S = 0)
    [InlineData(0x0010_0000_0000_0000UL)]  // not present, AVL only
    public void DecodingAgreesWithTheBootLayersDescriptorDecoder(ulong raw)
    {
        var expected = SegmentDescriptor.Decode(raw);

        KvmSegment s = VcpuSetup.SegmentFromDescriptor(raw, 0x2B);

        Assert.Equal(expected.Base, s.@base);
        Assert.Equal(expected.Limit, s.limit);
        Assert.Equal(expected.Type, s.type);
        Assert.Equal(expected.Present, s.present == 1);
        Assert.Equal(expected.Dpl, s.dpl);
        Assert.Equal(expected.Db, s.db == 1);
        Assert.Equal(expected.S, s.s == 1);
        Assert.Equal(expected.L, s.l == 1);
        Assert.Equal(expected.G, s.g == 1);
        Assert.Equal(expected.Avl, s.avl == 1);
        Assert.Equal(!expected.Present, s.unusable == 1);
        Assert.Equal(0x2B, s.selector);
    }

    [Fact]
    public void Linux64EntryIsLongModeWithPagingOnTheGivenTables()
    {
        KvmRegs regs = new() { rax = 99 };
        KvmSregs sregs = default;

        VcpuSetup.Linux64(ref regs, ref sregs, entry: 0x100_0200, bootParams: 0x7000, gdtBase: 0x500, gdtLimit: 39, idtBase: 0x540,
            pml4: 0x9000, BootGdt.Code64Descriptor, BootGdt.Code64Selector, BootGdt.DataDescriptor, BootGdt.DataSelector);

        Assert.Equal((0x100_0200UL, 0x7000UL, 0UL, 2UL), (regs.rip, regs.rsi, regs.rax, regs.rflags));
        Assert.Equal(BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging, sregs.cr0 & (BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging));
        Assert.Equal(0x9000UL, sregs.cr3);
        Assert.Equal(BootControlRegisters.Cr4Pae, sregs.cr4 & BootControlRegisters.Cr4Pae);
        Assert.Equal(BootControlRegisters.EferLme | BootControlRegisters.EferLma, sregs.efer);
        Assert.Equal((1, BootGdt.Code64Selector), (sregs.cs.l, sregs.cs.selector));
        Assert.All(new[] { sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss }, d => Assert.Equal(BootGdt.DataSelector, d.selector));
        Assert.Equal((0x500UL, (ushort)39), (sregs.gdt.@base, sregs.gdt.limit));
        Assert.Equal((0x540UL, (ushort)0), (sregs.idt.@base, sregs.idt.limit));
        Assert.Equal((1, 11, 0), (sregs.tr.present, sregs.tr.type, sregs.tr.s));
        Assert.Equal(64, CrashReport.Bitness(sregs));
    }

    [Fact]
    public void Pvh32EntryIsFlatProtectedModeWithoutPaging()
    {
        KvmRegs regs = default;
        KvmSregs sregs = default;

        VcpuSetup.Pvh32(ref regs, ref sregs, entry: 0x100_0000, startInfo: 0x6000, gdtBase: 0x500, gdtLimit: 39, idtBase: 0x540,
            BootGdt.Code32Descriptor, BootGdt.Code32Selector, BootGdt.DataDescriptor, BootGdt.DataSelector);

        Assert.Equal((0x100_0000UL, 0x6000UL), (regs.rip, regs.rbx));
        Assert.Equal(BootControlRegisters.Cr0ProtectionEnable, sregs.cr0 & (BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging));
        Assert.Equal((0UL, 0UL), (sregs.cr4, sregs.efer));
        Assert.Equal((1, 0, BootGdt.Code32Selector), (sregs.cs.db, sregs.cs.l, sregs.cs.selector));
        Assert.Equal(32, CrashReport.Bitness(sregs));
    }
}
