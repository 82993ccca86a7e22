using Csvmm.Emulation;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Emulation.Tests;

/// <summary>CMPXCHG16B, RDTSCP, XGETBV, CLAC/STAC, and what the emulator does with what it does not know.</summary>
public class SystemTests
{
    private const int Rax = CpuState.Rax, Rbx = CpuState.Rbx, Rcx = CpuState.Rcx, Rdx = CpuState.Rdx, Rdi = CpuState.Rdi;

    [Fact]
    public void Cmpxchg16b_stores_when_equal()
    {
        var r = Rig.Long64();
        r.Memory.U64(0x2_0000, 1);
        r.Memory.U64(0x2_0008, 2);
        (r[Rax], r[Rdx], r[Rbx], r[Rcx], r[Rdi]) = (1UL, 2UL, 0xB0B0UL, 0xC0C0UL, 0x2_0000UL);
        var o = r.Run(a => a.@lock.cmpxchg16b(__oword_ptr[rdi]));
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal(0xB0B0UL, r.Memory.U64(0x2_0000));
        Assert.Equal(0xC0C0UL, r.Memory.U64(0x2_0008));
        Assert.NotEqual(0UL, r.Cpu.Rflags & Flags.ZF);
        Assert.Equal((1UL, 2UL), (r[Rax], r[Rdx]));
    }

    [Fact]
    public void Cmpxchg16b_loads_when_different()
    {
        var r = Rig.Long64();
        r.Memory.U64(0x2_0000, 7);
        r.Memory.U64(0x2_0008, 8);
        (r[Rax], r[Rdx], r[Rbx], r[Rcx], r[Rdi]) = (1UL, 2UL, 0xB0B0UL, 0xC0C0UL, 0x2_0000UL);
        r.Cpu.Rflags |= Flags.ZF;
        r.Run(a => a.@lock.cmpxchg16b(__oword_ptr[rdi]));
        Assert.Equal((7UL, 8UL), (r.Memory.U64(0x2_0000), r.Memory.U64(0x2_0008)));
        Assert.Equal((7UL, 8UL), (r[Rax], r[Rdx]));
        Assert.Equal(0UL, r.Cpu.Rflags & Flags.ZF);
    }

    [Fact]
    public void Cmpxchg16b_misaligned_is_gp0_and_read_only_page_is_pf()
    {
        var r = Rig.Long64();
        r[Rdi] = 0x2_0008;
        var o = r.Run(a => a.@lock.cmpxchg16b(__oword_ptr[rdi]));
        Assert.Equal(EmulationStatus.Fault, o.Status);
        Assert.Equal(GuestFault.Gp(0), o.Fault);
        Assert.Equal(0x10_0000UL, r.Cpu.Rip); // a fault leaves RIP on the instruction

        r.Cpu.Cr0 |= ControlBits.Cr0Wp;
        r.PageFlags(0x2_0000, 0x1); // present, read-only, supervisor
        r[Rdi] = 0x2_0000;
        r.Memory.U64(0x2_0000, 5);
        r[Rax] = 0; // differs: a failing compare still needs write permission
        o = r.Run(a => a.@lock.cmpxchg16b(__oword_ptr[rdi]));
        Assert.Equal(new GuestFault(GuestFault.PF, 0x3, 0x2_0000), o.Fault); // P | W
    }

    [Fact]
    public void Rdtscp_returns_tsc_and_aux_and_clears_upper_halves()
    {
        var r = Rig.Long64();
        (r[Rax], r[Rdx], r[Rcx]) = (ulong.MaxValue, ulong.MaxValue, ulong.MaxValue);
        r.Run(a => a.rdtscp());
        Assert.Equal((0x9ABC_DEF0UL, 0x1234_5678UL, 7UL), (r[Rax], r[Rdx], r[Rcx]));
    }

    [Fact]
    public void Rdtscp_with_cr4_tsd_is_gp_outside_ring0()
    {
        var r = Rig.Long64(cpl: 3);
        r.Cpu.Cr4 |= ControlBits.Cr4Tsd;
        Assert.Equal(GuestFault.Gp(0), r.Run(a => a.rdtscp()).Fault);
        r = Rig.Long64(cpl: 0);
        r.Cpu.Cr4 |= ControlBits.Cr4Tsd;
        Assert.Equal(EmulationStatus.Completed, r.Run(a => a.rdtscp()).Status);
    }

    [Fact]
    public void Xgetbv_reads_xcr0_and_refuses_others()
    {
        var r = Rig.Long64();
        r[Rcx] = 0;
        r.Run(a => a.xgetbv());
        Assert.Equal((7UL, 2UL), (r[Rax], r[Rdx]));
        r[Rcx] = 1;
        Assert.Equal(GuestFault.Gp(0), r.Run(a => a.xgetbv()).Fault);
        r.Cpu.Cr4 &= ~ControlBits.Cr4Osxsave;
        r[Rcx] = 0;
        Assert.Equal(GuestFault.Ud, r.Run(a => a.xgetbv()).Fault);
    }

    [Fact]
    public void Clac_and_stac_flip_ac_in_ring0_and_are_ud_in_ring3()
    {
        var r = Rig.Long64();
        r.Run(a => a.stac());
        Assert.NotEqual(0UL, r.Cpu.Rflags & Flags.AC);
        r.Run(a => a.clac());
        Assert.Equal(0UL, r.Cpu.Rflags & Flags.AC);
        r = Rig.Long64(cpl: 3);
        Assert.Equal(GuestFault.Ud, r.Run(a => a.stac()).Fault);
    }

    [Fact]
    public void Unknown_instructions_are_reported_and_counted_kinds_are_not()
    {
        var r = Rig.Long64();
        var o = r.Run(a => a.cpuid());
        Assert.Equal(EmulationStatus.Unsupported, o.Status);
        Assert.Contains("cpuid", o.Reason);
        r.Run(a => a.popcnt(rax, rbx));
        r.Run(a => a.popcnt(rax, rbx));
        r.Run(a => a.rdtscp());
        Assert.Equal([("popcnt", 2L), ("rdtscp", 1L)], r.Emulator.Counts());
        Assert.Equal(3, r.Emulator.Total);
    }

    [Fact]
    public void Every_kind_in_the_table_has_a_handler_and_a_name()
    {
        Assert.Equal(["popcnt", "lzcnt", "tzcnt", "andn", "movbe", "cmpxchg16b", "rdtscp", "xgetbv", "clac", "stac", "int3", "int", "into", "iretd"],
            InstructionTable.Default.Names);
    }
}

/// <summary>An emulated instruction costs no allocation: the emulator runs on the vCPU thread, inside the run loop.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class EmulatorAllocationCollection
{
    public const string Name = "emulator allocation";
}

[Collection(EmulatorAllocationCollection.Name)]
public class EmulatorAllocationTests
{
    [Fact]
    public void Emulating_an_instruction_allocates_nothing()
    {
        var r = Rig.Protected32();
        byte[] popcnt = Rig.Assemble(32, r.Cpu.Rip, a => a.popcnt(Iced.Intel.AssemblerRegisters.eax, Iced.Intel.AssemblerRegisters.ebx));
        byte[] at = popcnt.ToArray();
        at.CopyTo(r.Memory.Bytes, (int)r.Cpu.Rip);
        long fromKvm = Csvmm.TestSupport.AllocationMeter.Measure(() =>
        {
            r.Cpu.Rip = 0x10_0000;
            r.Emulator.Step(r.Cpu, r.Memory, r.Host, popcnt);
        }, 1000);
        long fetched = Csvmm.TestSupport.AllocationMeter.Measure(() =>
        {
            r.Cpu.Rip = 0x10_0000;
            r.Emulator.Step(r.Cpu, r.Memory, r.Host, []);
        }, 1000);
        Assert.Equal((0L, 0L), (fromKvm, fetched));
        // Every step ran: per measurement a warm-up plus 1000 per attempt, and the meter makes one to three attempts (it
        // stops at the first with 0 bytes; a runtime's one-off allocation can cost an attempt).
        long steps = r.Emulator.Total - 2;
        Assert.True(steps % 1000 == 0 && steps is >= 2000 and <= 6000, $"{r.Emulator.Total} steps");
    }
}
