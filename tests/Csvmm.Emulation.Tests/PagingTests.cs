using Csvmm.Emulation;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Emulation.Tests;

/// <summary>Memory operands go through the guest's page tables with the processor's checks, and faults carry its error codes.</summary>
public class PagingTests
{
    private const int Rax = CpuState.Rax, Rcx = CpuState.Rcx;

    [Fact]
    public void A_not_present_page_is_a_page_fault_with_cr2()
    {
        var r = Rig.Long64();
        r.PageFlags(0x3_0000, 0); // not present
        r[Rcx] = 0x3_0010;
        var o = r.Run(a => a.movbe(rax, __qword_ptr[rcx]));
        Assert.Equal(EmulationStatus.Fault, o.Status);
        Assert.Equal(new GuestFault(GuestFault.PF, 0, 0x3_0010), o.Fault); // read, supervisor, not present
    }

    [Fact]
    public void Ring3_may_not_touch_a_supervisor_page_and_a_write_needs_rw_with_wp()
    {
        var r = Rig.Long64(cpl: 3);
        r.IdentityMap(pageFlags: 0x7); // user pages
        r.PageFlags(0x3_0000, 0x3);    // this one supervisor
        r[Rcx] = 0x3_0000;
        Assert.Equal(new GuestFault(GuestFault.PF, 0x5, 0x3_0000), r.Run(a => a.movbe(rax, __qword_ptr[rcx])).Fault); // P | U

        r = Rig.Long64();
        r.Cpu.Cr0 |= ControlBits.Cr0Wp;
        r.PageFlags(0x3_0000, 0x1); // read-only
        r[Rcx] = 0x3_0000;
        Assert.Equal(new GuestFault(GuestFault.PF, 0x3, 0x3_0000), r.Run(a => a.movbe(__qword_ptr[rcx], rax)).Fault); // P | W
        r.Cpu.Cr0 &= ~ControlBits.Cr0Wp; // without WP, ring 0 writes read-only pages
        Assert.Equal(EmulationStatus.Completed, r.Run(a => a.movbe(__qword_ptr[rcx], rax)).Status);
    }

    [Fact]
    public void Smap_blocks_supervisor_reads_of_user_pages_unless_ac_is_set()
    {
        var r = Rig.Long64();
        r.Cpu.Cr4 |= ControlBits.Cr4Smap;
        r.PageFlags(0x3_0000, 0x7);
        r[Rcx] = 0x3_0000;
        Assert.Equal(new GuestFault(GuestFault.PF, 0x1, 0x3_0000), r.Run(a => a.movbe(rax, __qword_ptr[rcx])).Fault);
        r.Cpu.Rflags |= Flags.AC;
        Assert.Equal(EmulationStatus.Completed, r.Run(a => a.movbe(rax, __qword_ptr[rcx])).Status);
    }

    [Fact]
    public void Accessed_and_dirty_bits_are_set_and_a_large_page_translates()
    {
        var r = Rig.Long64();
        r[Rcx] = 0x3_0000;
        r.Run(a => a.movbe(__qword_ptr[rcx], rax));
        Assert.Equal(0x60UL, r.PteOf(0x3_0000) & 0x60); // A | D
        r.Memory.U64(0x20_1000, 0x1122_3344_5566_7788);
        r[Rcx] = 0x20_1000; // inside the 2 MiB page
        r.Run(a => a.movbe(rax, __qword_ptr[rcx]));
        Assert.Equal(0x8877_6655_4433_2211UL, r[Rax]);
    }

    [Fact]
    public void A_non_canonical_address_is_gp0()
    {
        var r = Rig.Long64();
        r[Rcx] = 0x0000_8000_0000_0000;
        Assert.Equal(GuestFault.Gp(0), r.Run(a => a.movbe(rax, __qword_ptr[rcx])).Fault);
    }

    [Fact]
    public void An_operand_outside_ram_makes_the_instruction_unsupported_not_a_guest_fault()
    {
        var r = Rig.Long64();
        r.Cpu.Cr0 &= ~ControlBits.Cr0Pg;
        r.Cpu.Efer &= ~ControlBits.EferLma; // paging off: protected mode with a 64-bit-looking CS is compatibility mode
        r.Cpu.Cs = Segment.Flat(0x08, 0xB);
        r[Rcx] = 0xFEC0_0000; // the IOAPIC, not RAM
        var o = r.Run(a => a.movbe(eax, __dword_ptr[ecx]));
        Assert.Equal(EmulationStatus.Unsupported, o.Status);
        Assert.Equal("an operand is not in guest RAM", o.Reason);
    }

    [Fact]
    public void Instruction_bytes_are_fetched_through_paging_and_a_fetch_from_an_nx_page_faults()
    {
        var r = Rig.Long64();
        r[CpuState.Rbx] = 0xFF;
        var o = r.Run(a => a.popcnt(rax, rbx), fromMemory: true);
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal(8UL, r[Rax]);

        r.PageFlags(0x10_0000, 0x3 | (1UL << 63)); // the code page: NX
        r.Cpu.Rip = 0x10_0000;
        o = r.Run(a => a.popcnt(rax, rbx), fromMemory: true);
        Assert.Equal(new GuestFault(GuestFault.PF, 0x11, 0x10_0000), o.Fault); // P | I/D
    }

    [Fact]
    public void An_instruction_that_runs_into_an_unmapped_page_raises_that_pages_fault()
    {
        var r = Rig.Long64();
        r.PageFlags(0x10_1000, 0);   // the page after the code
        r.Cpu.Rip = 0x10_0FFE;       // popcnt rax, rbx is 5 bytes: 2 on this page, 3 on the next
        var o = r.Run(a => a.popcnt(rax, rbx), fromMemory: true);
        Assert.Equal(new GuestFault(GuestFault.PF, 0x10, 0x10_1000), o.Fault); // fetch, not present
    }
}
