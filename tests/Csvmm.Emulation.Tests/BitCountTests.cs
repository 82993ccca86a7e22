using Csvmm.Emulation;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Emulation.Tests;

/// <summary>POPCNT, LZCNT, TZCNT, ANDN, MOVBE: results and flags against the SDM's definitions.</summary>
public class BitCountTests
{
    private const int Rax = CpuState.Rax, Rbx = CpuState.Rbx, Rcx = CpuState.Rcx;
    private const ulong AllStatus = Flags.Status;

    [Theory]
    [InlineData(0xF0F0UL, 8UL)]
    [InlineData(ulong.MaxValue, 64UL)]
    [InlineData(0x8000_0000_0000_0001UL, 2UL)]
    public void Popcnt64_counts_and_clears_every_status_flag(ulong source, ulong count)
    {
        var r = Rig.Long64();
        r[Rbx] = source;
        r.Cpu.Rflags |= AllStatus;
        var o = r.Run(a => a.popcnt(rax, rbx));
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal(count, r[Rax]);
        Assert.Equal(Flags.Fixed, r.Cpu.Rflags & (AllStatus | Flags.Fixed));
        Assert.Equal(0x10_0000UL + 5, r.Cpu.Rip); // F3 48 0F B8 C3
    }

    [Fact]
    public void Popcnt_of_zero_sets_only_zf()
    {
        var r = Rig.Long64();
        r[Rax] = 99;
        r.Cpu.Rflags |= AllStatus;
        r.Run(a => a.popcnt(rax, rbx));
        Assert.Equal(0UL, r[Rax]);
        Assert.Equal(Flags.ZF, r.Cpu.Rflags & AllStatus);
    }

    [Fact]
    public void Popcnt32_from_memory_zero_extends_and_popcnt16_merges()
    {
        var r = Rig.Long64();
        r.Memory.U32(0x2_0000, 0x0000_00FF);
        r[Rcx] = 0x2_0000;
        r[Rax] = 0xFFFF_FFFF_FFFF_FFFF;
        r.Run(a => a.popcnt(eax, __dword_ptr[rcx]));
        Assert.Equal(8UL, r[Rax]);

        r[Rax] = 0xAAAA_AAAA_AAAA_AAAA;
        r[Rbx] = 0x0003;
        r.Run(a => a.popcnt(ax, bx));
        Assert.Equal(0xAAAA_AAAA_AAAA_0002UL, r[Rax]);
    }

    [Theory]
    [InlineData(0UL, 32UL, true, false)]           // source 0: the operand size, CF
    [InlineData(0x8000_0000UL, 0UL, false, true)]  // top bit set: 0, ZF
    [InlineData(1UL, 31UL, false, false)]
    public void Lzcnt32(ulong source, ulong result, bool cf, bool zf)
    {
        var r = Rig.Long64();
        r[Rbx] = source | 0xFFFF_FFFF_0000_0000; // the upper half is not part of a 32-bit operand
        r.Cpu.Rflags |= Flags.OF | Flags.SF | Flags.PF | Flags.AF;
        r.Run(a => a.lzcnt(eax, ebx));
        Assert.Equal(result, r[Rax]);
        Assert.Equal(cf, (r.Cpu.Rflags & Flags.CF) != 0);
        Assert.Equal(zf, (r.Cpu.Rflags & Flags.ZF) != 0);
        Assert.Equal(Flags.OF | Flags.SF | Flags.PF | Flags.AF, r.Cpu.Rflags & (Flags.OF | Flags.SF | Flags.PF | Flags.AF)); // undefined: unchanged
    }

    [Theory]
    [InlineData(0UL, 64UL, true, false)]
    [InlineData(8UL, 3UL, false, false)]
    [InlineData(1UL, 0UL, false, true)]
    [InlineData(0x8000_0000_0000_0000UL, 63UL, false, false)]
    public void Tzcnt64(ulong source, ulong result, bool cf, bool zf)
    {
        var r = Rig.Long64();
        r[Rbx] = source;
        r.Run(a => a.tzcnt(rax, rbx));
        Assert.Equal(result, r[Rax]);
        Assert.Equal(cf, (r.Cpu.Rflags & Flags.CF) != 0);
        Assert.Equal(zf, (r.Cpu.Rflags & Flags.ZF) != 0);
    }

    [Fact]
    public void Tzcnt16_of_zero_is_16()
    {
        var r = Rig.Long64();
        r[Rax] = 0x1111_1111_1111_1111;
        r.Run(a => a.tzcnt(ax, bx));
        Assert.Equal(0x1111_1111_1111_0010UL, r[Rax]);
    }

    [Theory]
    [InlineData(0x0F0FUL, 0xFFFFUL, 0xF0F0UL, false, false)]
    [InlineData(0xFFFF_FFFFUL, 0x1234UL, 0UL, true, false)]
    [InlineData(0UL, 0x8000_0000UL, 0x8000_0000UL, false, true)]
    public void Andn32(ulong first, ulong second, ulong result, bool zf, bool sf)
    {
        var r = Rig.Long64();
        r[Rbx] = first;
        r[Rcx] = second;
        r.Cpu.Rflags |= Flags.OF | Flags.CF;
        r.Run(a => a.andn(eax, ebx, ecx));
        Assert.Equal(result, r[Rax]);
        Assert.Equal(zf, (r.Cpu.Rflags & Flags.ZF) != 0);
        Assert.Equal(sf, (r.Cpu.Rflags & Flags.SF) != 0);
        Assert.Equal(0UL, r.Cpu.Rflags & (Flags.OF | Flags.CF));
    }

    [Fact]
    public void Movbe_loads_and_stores_byte_swapped()
    {
        var r = Rig.Long64();
        r.Memory.U64(0x2_0000, 0x0102_0304_0506_0708);
        r[Rcx] = 0x2_0000;
        r.Run(a => a.movbe(rax, __qword_ptr[rcx]));
        Assert.Equal(0x0807_0605_0403_0201UL, r[Rax]);
        r[Rbx] = 0xAABB_CCDD;
        r.Run(a => a.movbe(__dword_ptr[rcx + 8], ebx));
        Assert.Equal(0xDDCC_BBAAu, r.Memory.U32(0x2_0008));
        r.Run(a => a.movbe(bx, __word_ptr[rcx]));
        Assert.Equal(0xAABB_0807UL, r[Rbx]);
    }
}
