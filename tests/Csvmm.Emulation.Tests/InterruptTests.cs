using Csvmm.Emulation;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Emulation.Tests;

/// <summary>INT3 / INT n / INTO and IRETD.</summary>
public class InterruptTests
{
    private const ulong Idt = 0x6_0000, Gdt = 0x5_0000;

    /// <summary>A 64-bit interrupt gate (16 bytes) for <paramref name="vector"/> with <paramref name="dpl"/>.</summary>
    private static void Gate64(Rig r, int vector, int dpl, bool present = true)
    {
        ulong at = Idt + (ulong)vector * 16;
        byte access = (byte)((present ? 0x80 : 0) | (dpl << 5) | 0xE);
        r.Memory.U64(at, 0x0000_0000_0008_1000UL | ((ulong)access << 40));
        r.Memory.U64(at + 8, 0);
    }

    private static Rig LongWithIdt(int cpl)
    {
        var r = Rig.Long64(cpl);
        r.IdentityMap(pageFlags: 0x7);
        r.Cpu.Idt = new DescriptorTable { Base = Idt, Limit = 256 * 16 - 1 };
        return r;
    }

    [Fact]
    public void Int3_is_handed_over_with_rip_past_it()
    {
        var r = LongWithIdt(0);
        Gate64(r, 3, dpl: 0);
        var o = r.Run(a => a.int3());
        Assert.Equal(EmulationStatus.SoftwareInterrupt, o.Status);
        Assert.Equal(3, o.Vector);
        Assert.Equal(0x10_0001UL, r.Cpu.Rip); // the handler returns after the int3
    }

    [Fact]
    public void Int_n_from_ring3_needs_a_dpl3_gate()
    {
        var r = LongWithIdt(3);
        Gate64(r, 0x80, dpl: 3);
        Gate64(r, 0x81, dpl: 0);
        var o = r.Run(a => a.@int(0x80));
        Assert.Equal((EmulationStatus.SoftwareInterrupt, (byte)0x80), (o.Status, o.Vector));
        Assert.Equal(0x10_0002UL, r.Cpu.Rip);

        r.Cpu.Rip = 0x10_0000;
        o = r.Run(a => a.@int(0x81));
        Assert.Equal(GuestFault.Gp(0x81 * 8 + 2), o.Fault);
        Assert.Equal(0x10_0000UL, r.Cpu.Rip);
    }

    [Fact]
    public void A_gate_past_the_idt_limit_or_not_present_faults_with_the_idt_error_code()
    {
        var r = LongWithIdt(0);
        r.Cpu.Idt.Limit = 16 * 0x20 - 1;
        Assert.Equal(GuestFault.Gp(0x40 * 8 + 2), r.Run(a => a.@int(0x40)).Fault);
        Gate64(r, 0x10, dpl: 0, present: false);
        Assert.Equal(new GuestFault(GuestFault.NP, 0x10 * 8 + 2), r.Run(a => a.@int(0x10)).Fault);
    }

    [Fact]
    public void Into_interrupts_only_with_of()
    {
        var r = Rig.Protected32();
        r.Cpu.Idt = new DescriptorTable { Base = Idt, Limit = 0x7FF };
        r.Memory.U64(Idt + 4 * 8, 0x0000_8E00_0008_1000UL); // 32-bit interrupt gate, DPL 0
        var o = r.Run(a => a.into());
        Assert.Equal(EmulationStatus.Completed, o.Status);
        r.Cpu.Rflags |= Flags.OF;
        o = r.Run(a => a.into());
        Assert.Equal((EmulationStatus.SoftwareInterrupt, (byte)4), (o.Status, o.Vector));
    }

    [Fact]
    public void Real_mode_int_n_is_delivered_through_the_ivt()
    {
        var r = Rig.Real();
        r.Memory.U32(0x10 * 4, 0xF000_1234); // INT 10h → F000:1234
        r.Cpu.Rflags |= Flags.IF | Flags.TF | Flags.CF;
        var o = r.Run(a => a.@int(0x10));
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal((ushort)0xF000, r.Cpu.Cs.Selector);
        Assert.Equal(0xF_0000UL, r.Cpu.Cs.Base);
        Assert.Equal(0x1234UL, r.Cpu.Rip);
        Assert.Equal(0x6FFAUL, r.Cpu.Gpr[CpuState.Rsp]);
        Assert.Equal(0x7C02, r.Memory.U16(0x6FFA));        // return IP
        Assert.Equal(0x0000, r.Memory.U16(0x6FFC));        // return CS
        Assert.Equal((ushort)(Flags.Fixed | Flags.IF | Flags.TF | Flags.CF), r.Memory.U16(0x6FFE)); // FLAGS as they were
        Assert.Equal(0UL, r.Cpu.Rflags & (Flags.IF | Flags.TF));
        Assert.NotEqual(0UL, r.Cpu.Rflags & Flags.CF);
    }

    // ---- IRETD ----

    private static Rig WithGdt()
    {
        var r = Rig.Protected32();
        r.Cpu.Gdt = new DescriptorTable { Base = Gdt, Limit = 8 * 8 - 1 };
        r.Memory.U64(Gdt + 0x08, 0x00CF_9B00_0000_FFFF); // flat 32-bit code, DPL 0, accessed
        r.Memory.U64(Gdt + 0x10, 0x00CF_9300_0000_FFFF); // flat data
        r.Memory.U64(Gdt + 0x18, 0x0040_9A01_0000_0FFF); // 32-bit code, base 0x10000, limit 0xFFF, not accessed
        r.Memory.U64(Gdt + 0x20, 0x00CF_9300_0000_FFFF); // data: not a code segment
        r.Memory.U64(Gdt + 0x28, 0x00CF_1B00_0000_FFFF); // code, not present
        r.Memory.U64(Gdt + 0x30, 0x00CF_FB00_0000_FFFF); // code, DPL 3
        return r;
    }

    private static void Frame(Rig r, uint eip, ushort cs, uint eflags)
    {
        ulong sp = r.Cpu.Gpr[CpuState.Rsp];
        r.Memory.U32(sp, eip);
        r.Memory.U32(sp + 4, cs);
        r.Memory.U32(sp + 8, eflags);
    }

    [Fact]
    public void Iretd_to_another_code_segment_loads_its_descriptor()
    {
        var r = WithGdt();
        Frame(r, 0x0800, 0x18, (uint)(Flags.Fixed | Flags.IF | Flags.CF | Flags.Iopl));
        var o = r.Run(a => a.iretd());
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal((ushort)0x18, r.Cpu.Cs.Selector);
        Assert.Equal(0x1_0000UL, r.Cpu.Cs.Base);
        Assert.Equal(0xFFFu, r.Cpu.Cs.Limit);
        Assert.True(r.Cpu.Cs.Db);
        Assert.Equal(0x0800UL, r.Cpu.Rip);
        Assert.Equal(0x8_000CUL, r.Cpu.Gpr[CpuState.Rsp]);
        Assert.Equal(Flags.Fixed | Flags.IF | Flags.CF | Flags.Iopl, r.Cpu.Rflags); // at CPL 0: IF and IOPL load
        Assert.Equal(0x9B, r.Memory.Bytes[(int)(Gdt + 0x18 + 5)]); // accessed bit set in the GDT
    }

    [Fact]
    public void Iretd_to_the_same_segment_keeps_going()
    {
        var r = WithGdt();
        Frame(r, 0x20_0000, 0x08, (uint)Flags.Fixed);
        r.Cpu.Rflags |= Flags.IF;
        r.Run(a => a.iretd());
        Assert.Equal((0x20_0000UL, (ushort)0x08), (r.Cpu.Rip, r.Cpu.Cs.Selector));
        Assert.Equal(0UL, r.Cpu.Rflags & Flags.IF); // restored from the frame
    }

    [Theory]
    [InlineData(0x0000, 0u, "null selector: #GP(0)")]
    [InlineData(0x0040, 0x40u, "past the GDT limit")]
    [InlineData(0x0020, 0x20u, "a data segment")]
    public void Iretd_refuses_what_a_processor_refuses_with_gp(ushort selector, uint error, string why)
    {
        var r = WithGdt();
        Frame(r, 0x1000, selector, (uint)Flags.Fixed);
        var o = r.Run(a => a.iretd());
        Assert.True(GuestFault.Gp(error) == o.Fault, $"{why}: {o}");
        Assert.Equal(0x10_0000UL, r.Cpu.Rip);
        Assert.Equal((ushort)0x08, r.Cpu.Cs.Selector);
    }

    [Fact]
    public void Iretd_to_a_not_present_segment_is_np_and_past_the_limit_is_gp0()
    {
        var r = WithGdt();
        Frame(r, 0x1000, 0x28, (uint)Flags.Fixed);
        Assert.Equal(new GuestFault(GuestFault.NP, 0x28), r.Run(a => a.iretd()).Fault);
        Frame(r, 0x1000, 0x18, (uint)Flags.Fixed); // limit 0xFFF
        Assert.Equal(GuestFault.Gp(0), r.Run(a => a.iretd()).Fault);
    }

    private static Rig WithRing3Stack()
    {
        var r = WithGdt();
        r.Cpu.Gdt = new DescriptorTable { Base = Gdt, Limit = 10 * 8 - 1 };
        r.Memory.U64(Gdt + 0x38, 0x00CF_F200_0000_FFFF); // data, DPL 3, writable, not accessed
        r.Memory.U64(Gdt + 0x40, 0x00CF_7300_0000_FFFF); // data, DPL 3, not present
        r.Memory.U64(Gdt + 0x48, 0x00CF_F000_0000_FFFF); // data, DPL 3, read-only
        return r;
    }

    private static void OuterFrame(Rig r, uint eip, ushort cs, uint eflags, uint esp, ushort ss)
    {
        Frame(r, eip, cs, eflags);
        ulong sp = r.Cpu.Gpr[CpuState.Rsp];
        r.Memory.U32(sp + 12, esp);
        r.Memory.U32(sp + 16, ss);
    }

    [Fact]
    public void Iretd_to_ring3_loads_the_outer_stack_and_nulls_more_privileged_data_segments()
    {
        var r = WithRing3Stack();
        r.Cpu.Ds = Segment.Flat(0x10, 0x3);         // ring-0 data: must not survive into ring 3
        r.Cpu.Es = Segment.Flat(0x10, 0x3);
        r.Cpu.Fs = Segment.Flat(0x3B, 0x3, dpl: 3); // ring-3 data: kept
        r.Cpu.Gs = Segment.Flat(0x08, 0xF);         // conforming code: kept
        OuterFrame(r, 0x2000, 0x33, (uint)(Flags.Fixed | Flags.IF | Flags.ZF), 0x7_0000, 0x3B);
        var o = r.Run(a => a.iretd());
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal(3, r.Cpu.Cpl);
        Assert.Equal(((ushort)0x33, 0x2000UL), (r.Cpu.Cs.Selector, r.Cpu.Rip));
        Assert.Equal(((ushort)0x3B, (byte)3), (r.Cpu.Ss.Selector, r.Cpu.Ss.Dpl));
        Assert.Equal(0x7_0000UL, r.Cpu.Gpr[CpuState.Rsp]);
        Assert.True(r.Cpu.Ds.Unusable && r.Cpu.Es.Unusable);
        Assert.Equal((ushort)0, r.Cpu.Ds.Selector);
        Assert.False(r.Cpu.Fs.Unusable);
        Assert.False(r.Cpu.Gs.Unusable);
        Assert.Equal(Flags.Fixed | Flags.IF | Flags.ZF, r.Cpu.Rflags); // IF loads: the CPL before the return was 0
        Assert.Equal(0xF3, r.Memory.Bytes[(int)(Gdt + 0x38 + 5)]);     // SS's accessed bit set
    }

    [Theory]
    [InlineData((ushort)0x0000, 13, 0u, "null SS: #GP(0)")]
    [InlineData((ushort)0x0038, 13, 0x38u, "SS.RPL 0 differs from CS.RPL 3")]
    [InlineData((ushort)0x0033, 13, 0x30u, "SS is a code segment")]
    [InlineData((ushort)0x004B, 13, 0x48u, "SS is read-only")]
    [InlineData((ushort)0x0013, 13, 0x10u, "SS.RPL 3 but DPL 0")]
    [InlineData((ushort)0x0053, 13, 0x50u, "SS past the GDT limit")]
    [InlineData((ushort)0x0043, 12, 0x40u, "SS not present: #SS(selector)")]
    public void Iretd_to_ring3_refuses_a_bad_outer_stack_and_changes_nothing(ushort ss, byte vector, uint error, string why)
    {
        var r = WithRing3Stack();
        OuterFrame(r, 0x2000, 0x33, (uint)Flags.Fixed, 0x7_0000, ss);
        var o = r.Run(a => a.iretd());
        Assert.True(new GuestFault(vector, error) == o.Fault, $"{why}: {o}");
        Assert.Equal(((ushort)0x08, 0x10_0000UL, 0), (r.Cpu.Cs.Selector, r.Cpu.Rip, r.Cpu.Cpl));
        Assert.Equal(0x8_0000UL, r.Cpu.Gpr[CpuState.Rsp]);
    }

    [Fact]
    public void Iretd_with_nt_is_reported_not_guessed()
    {
        var r = WithGdt();
        r.Cpu.Rflags |= Flags.NT;
        Frame(r, 0x1000, 0x08, (uint)Flags.Fixed);
        Assert.Equal(EmulationStatus.Unsupported, r.Run(a => a.iretd()).Status);
    }

    [Fact]
    public void Iretd_at_ring3_cannot_change_iopl_or_if()
    {
        var r = WithGdt();
        r.Cpu.Cs = Segment.Flat(0x33, 0xB, dpl: 3);
        r.Cpu.Ss = Segment.Flat(0x3B, 0x3, dpl: 3);
        r.Cpu.Rflags = Flags.Fixed | Flags.IF;
        Frame(r, 0x2000, 0x33, (uint)(Flags.Fixed | Flags.Iopl | Flags.CF));
        var o = r.Run(a => a.iretd());
        Assert.Equal(EmulationStatus.Completed, o.Status);
        Assert.Equal(Flags.Fixed | Flags.IF | Flags.CF, r.Cpu.Rflags); // IOPL stays 0, IF stays set (CPL 3 > IOPL 0)
    }
}
