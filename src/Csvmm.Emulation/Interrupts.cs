using System.Buffers.Binary;

namespace Csvmm.Emulation;

/// <summary>
/// INT n, INT3, INTO and IRETD. Software interrupts in protected and long mode are checked here (IDT limit, gate DPL
/// against CPL, present) and handed to the machine to inject with RIP already past the instruction, so the handler's
/// return address is the next instruction; in real mode the interrupt is delivered here through the IVT. IRETD is
/// carried out in 32-bit protected mode for a return to the same privilege level, descriptor load included.
/// </summary>
internal static class Interrupts
{
    public static EmulationOutcome Int3(ref InstructionContext c) => Software(ref c, GuestFault.BP);

    public static EmulationOutcome IntN(ref InstructionContext c) => Software(ref c, c.Instruction.Immediate8);

    /// <summary>INTO: interrupt 4 when OF is set, else nothing (#UD in 64-bit mode, where it does not decode).</summary>
    public static EmulationOutcome Into(ref InstructionContext c) =>
        (c.Cpu.Rflags & Flags.OF) == 0 ? c.Complete() : Software(ref c, GuestFault.OF);

    private static EmulationOutcome Software(ref InstructionContext c, byte vector)
    {
        CpuState cpu = c.Cpu;
        CpuMode mode = cpu.Mode;
        if (mode == CpuMode.Real) return RealMode(ref c, vector);
        // INT n (not INT3 or INTO) in virtual-8086 mode with IOPL < 3 is #GP(0).
        if (mode == CpuMode.Virtual8086 && c.Instruction.Code == Iced.Intel.Code.Int_imm8 && (cpu.Rflags & Flags.Iopl) != Flags.Iopl)
            return c.Raise(GuestFault.Gp());
        int gateSize = mode == CpuMode.Long64 ? 16 : 8;
        uint idtError = (uint)vector * 8 + 2; // IDT bit set, EXT clear
        if ((ulong)vector * (ulong)gateSize + (ulong)gateSize - 1 > cpu.Idt.Limit) return c.Raise(GuestFault.Gp(idtError));
        Span<byte> gate = stackalloc byte[8];
        if (c.Memory.ReadLinear(cpu.Idt.Base + (ulong)vector * (ulong)gateSize, gate, AccessKind.Read, supervisor: true) is { } f)
            return c.Raise(f);
        byte access = gate[5];
        int type = access & 0xF;
        int dpl = (access >> 5) & 3;
        bool validType = mode == CpuMode.Long64 ? type is 0xE or 0xF : type is 0x5 or 0x6 or 0x7 or 0xE or 0xF;
        if (!validType) return c.Raise(GuestFault.Gp(idtError));
        if (dpl < cpu.Cpl) return c.Raise(GuestFault.Gp(idtError)); // the software-interrupt privilege check
        if ((access & 0x80) == 0) return c.Raise(new GuestFault(GuestFault.NP, idtError));
        ulong next = c.Instruction.NextIP;
        cpu.Rip = cpu.Bitness switch { 64 => next, 32 => next & 0xFFFF_FFFF, _ => next & 0xFFFF };
        return EmulationOutcome.Interrupt(c.Mnemonic, vector);
    }

    /// <summary>Real mode: push FLAGS, CS, IP; clear IF, TF, AC; CS:IP from the IVT entry (IDTR base + 4n).</summary>
    private static EmulationOutcome RealMode(ref InstructionContext c, byte vector)
    {
        CpuState cpu = c.Cpu;
        ulong entryOffset = (ulong)vector * 4;
        if (entryOffset + 3 > cpu.Idt.Limit) return c.Raise(GuestFault.Gp()); // beyond the IVT limit: #GP (shutdown on an 8086)
        Span<byte> entry = stackalloc byte[4];
        if (c.Memory.ReadLinear(cpu.Idt.Base + entryOffset, entry, AccessKind.Read, supervisor: true) is { } f) return c.Raise(f);
        ushort ip = BinaryPrimitives.ReadUInt16LittleEndian(entry), cs = BinaryPrimitives.ReadUInt16LittleEndian(entry[2..]);
        ushort sp = (ushort)cpu.Gpr[CpuState.Rsp];
        Span<byte> frame = stackalloc byte[6]; // at SP-6: IP, CS, FLAGS
        BinaryPrimitives.WriteUInt16LittleEndian(frame, (ushort)c.Instruction.NextIP);
        BinaryPrimitives.WriteUInt16LittleEndian(frame[2..], cpu.Cs.Selector);
        BinaryPrimitives.WriteUInt16LittleEndian(frame[4..], (ushort)cpu.Rflags);
        ushort newSp = (ushort)(sp - 6); // a real-mode stack wraps within its 64 KiB segment
        if (c.Memory.Write(SegmentName.Ss, newSp, frame) is { } wf) return c.Raise(wf);
        cpu.Gpr[CpuState.Rsp] = (cpu.Gpr[CpuState.Rsp] & ~0xFFFFUL) | newSp;
        cpu.Rflags &= ~(Flags.IF | Flags.TF | Flags.AC | Flags.RF);
        cpu.Cs.Selector = cs;
        cpu.Cs.Base = (ulong)cs << 4;
        cpu.Rip = ip;
        return EmulationOutcome.Done(c.Mnemonic);
    }

    /// <summary>
    /// IRETD in 32-bit protected mode, to the same privilege level: pops EIP, CS and EFLAGS, loads CS from the GDT or
    /// LDT with the checks a processor makes (null → #GP(0), outside the table or not code → #GP(selector), wrong
    /// privilege → #GP(selector), not present → #NP(selector), EIP past the limit → #GP(0)), sets the descriptor's
    /// accessed bit, and updates EFLAGS with the CPL/IOPL rules. To an outer privilege level (CS.RPL &gt; CPL) it also pops
    /// ESP and SS, checks SS as the processor does (null → #GP(0); outside the table, RPL ≠ CS.RPL, not a writable
    /// data segment or DPL ≠ CS.RPL → #GP(selector); not present → #SS(selector)), loads SS:ESP, and nulls DS, ES, FS
    /// and GS where they hold a data or non-conforming code segment more privileged than the new CPL. A task return
    /// (NT) and a return to virtual-8086 mode are left unsupported (reported, not guessed).
    /// </summary>
    public static EmulationOutcome Iretd(ref InstructionContext c)
    {
        CpuState cpu = c.Cpu;
        CpuMode mode = cpu.Mode;
        if (mode is not (CpuMode.Protected32 or CpuMode.Protected16))
            return EmulationOutcome.NotSupported(c.Mnemonic, $"iretd in {mode} mode is not emulated (KVM runs it)");
        if ((cpu.Rflags & Flags.NT) != 0)
            return EmulationOutcome.NotSupported(c.Mnemonic, "iretd with EFLAGS.NT set (a task return) is not emulated");

        bool stack32 = cpu.Ss.Db;
        ulong sp = stack32 ? cpu.Gpr[CpuState.Rsp] & 0xFFFF_FFFF : cpu.Gpr[CpuState.Rsp] & 0xFFFF;
        Span<byte> frame = stackalloc byte[12];
        if (c.Memory.Read(SegmentName.Ss, sp, frame) is { } f) return c.Raise(f);
        uint eip = BinaryPrimitives.ReadUInt32LittleEndian(frame);
        ushort selector = BinaryPrimitives.ReadUInt16LittleEndian(frame[4..]);
        uint eflags = BinaryPrimitives.ReadUInt32LittleEndian(frame[8..]);
        int cpl = cpu.Cpl;
        if ((eflags & Flags.VM) != 0 && cpl == 0)
            return EmulationOutcome.NotSupported(c.Mnemonic, "iretd to virtual-8086 mode is not emulated");

        if ((selector & 0xFFFC) == 0) return c.Raise(GuestFault.Gp());
        int rpl = selector & 3;
        uint selectorError = (uint)(selector & 0xFFFC);
        if (rpl < cpl) return c.Raise(GuestFault.Gp(selectorError));
        bool outer = rpl > cpl;

        if (ReadDescriptor(ref c, selector, out ulong descriptorAddress, out ulong descriptor) is { } df) return c.Raise(df);
        byte access = (byte)(descriptor >> 40);
        bool codeOrData = (access & 0x10) != 0, code = (access & 0x08) != 0, conforming = (access & 0x04) != 0;
        int dpl = (access >> 5) & 3;
        if (!codeOrData || !code) return c.Raise(GuestFault.Gp(selectorError));
        if (conforming ? dpl > rpl : dpl != rpl) return c.Raise(GuestFault.Gp(selectorError));
        if ((access & 0x80) == 0) return c.Raise(new GuestFault(GuestFault.NP, selectorError));

        // To an outer level: the outer stack, checked before anything changes.
        Segment ss = default;
        uint outerEsp = 0;
        ulong ssDescriptorAddress = 0;
        if (outer)
        {
            Span<byte> outerFrame = stackalloc byte[8];
            ulong outerAt = stack32 ? (sp + 12) & 0xFFFF_FFFF : (sp + 12) & 0xFFFF;
            if (c.Memory.Read(SegmentName.Ss, outerAt, outerFrame) is { } of) return c.Raise(of);
            outerEsp = BinaryPrimitives.ReadUInt32LittleEndian(outerFrame);
            ushort ssSelector = BinaryPrimitives.ReadUInt16LittleEndian(outerFrame[4..]);
            uint ssError = (uint)(ssSelector & 0xFFFC);
            if ((ssSelector & 0xFFFC) == 0) return c.Raise(GuestFault.Gp());
            if (ReadDescriptor(ref c, ssSelector, out ssDescriptorAddress, out ulong ssDescriptor) is { } sf) return c.Raise(sf);
            byte ssAccess = (byte)(ssDescriptor >> 40);
            bool writableData = (ssAccess & 0x18) == 0x10 && (ssAccess & 0x02) != 0;
            if ((ssSelector & 3) != rpl || !writableData || ((ssAccess >> 5) & 3) != rpl)
                return c.Raise(GuestFault.Gp(ssError));
            if ((ssAccess & 0x80) == 0) return c.Raise(GuestFault.Ss(ssError));
            ss = Decode(ssSelector, ssDescriptor);
        }

        Segment cs = Decode(selector, descriptor);
        if (eip > cs.Limit) return c.Raise(GuestFault.Gp());

        // Accessed bit, as the processor sets it on a descriptor load.
        if ((access & 0x01) == 0)
        {
            Span<byte> b = [(byte)(access | 0x01)];
            if (c.Memory.WriteLinear(descriptorAddress + 5, b, supervisor: true) is { } wf) return c.Raise(wf);
            cs.Type |= 0x01;
        }

        if (outer && (ss.Type & 0x01) == 0)
        {
            Span<byte> b = [(byte)(0x80 | (ss.Dpl << 5) | 0x10 | ss.Type | 0x01)];
            if (c.Memory.WriteLinear(ssDescriptorAddress + 5, b, supervisor: true) is { } wf) return c.Raise(wf);
            ss.Type |= 0x01;
        }

        // EFLAGS (by the CPL before the return): always CF PF AF ZF SF TF DF OF NT RF AC ID; IF when CPL <= IOPL;
        // IOPL, VIF, VIP at CPL 0 only.
        ulong mask = Flags.Status | Flags.TF | Flags.DF | Flags.NT | Flags.RF | Flags.AC | Flags.ID;
        int iopl = (int)((cpu.Rflags & Flags.Iopl) >> 12);
        if (cpl <= iopl) mask |= Flags.IF;
        if (cpl == 0) mask |= Flags.Iopl | Flags.VIF | Flags.VIP;
        cpu.Rflags = (cpu.Rflags & ~mask) | (eflags & mask) | Flags.Fixed;
        cpu.Cs = cs;
        cpu.Rip = eip;
        if (outer)
        {
            cpu.Ss = ss;
            cpu.Gpr[CpuState.Rsp] = ss.Db ? outerEsp : (cpu.Gpr[CpuState.Rsp] & ~0xFFFFUL) | (outerEsp & 0xFFFF);
            NullIfMorePrivileged(ref cpu.Ds, rpl);
            NullIfMorePrivileged(ref cpu.Es, rpl);
            NullIfMorePrivileged(ref cpu.Fs, rpl);
            NullIfMorePrivileged(ref cpu.Gs, rpl);
            return EmulationOutcome.Done(c.Mnemonic);
        }
        ulong newSp = sp + 12;
        cpu.Gpr[CpuState.Rsp] = stack32 ? newSp & 0xFFFF_FFFF : (cpu.Gpr[CpuState.Rsp] & ~0xFFFFUL) | (newSp & 0xFFFF);
        return EmulationOutcome.Done(c.Mnemonic);
    }

    /// <summary>A data or non-conforming code segment more privileged than the new CPL becomes null (SDM: IRET, outer level).</summary>
    private static void NullIfMorePrivileged(ref Segment segment, int cpl)
    {
        if (segment.Unusable || !segment.S) return;
        bool conformingCode = (segment.Type & 0x0C) == 0x0C;
        if (conformingCode || segment.Dpl >= cpl) return;
        segment = new Segment { Unusable = true };
    }

    /// <summary>Reads the 8-byte descriptor of <paramref name="selector"/> from the GDT or LDT (#GP(selector) outside its limit).</summary>
    private static GuestFault? ReadDescriptor(ref InstructionContext c, ushort selector, out ulong address, out ulong descriptor)
    {
        descriptor = 0;
        address = 0;
        CpuState cpu = c.Cpu;
        uint index = (uint)(selector & 0xFFF8);
        uint error = (uint)(selector & 0xFFFC);
        ulong tableBase, tableLimit;
        if ((selector & 4) != 0)
        {
            if (cpu.Ldt.Unusable || !cpu.Ldt.Present) return GuestFault.Gp(error);
            tableBase = cpu.Ldt.Base;
            tableLimit = cpu.Ldt.Limit;
        }
        else
        {
            tableBase = cpu.Gdt.Base;
            tableLimit = cpu.Gdt.Limit;
        }
        if (index + 7 > tableLimit) return GuestFault.Gp(error);
        address = (tableBase + index) & 0xFFFF_FFFF;
        Span<byte> bytes = stackalloc byte[8];
        if (c.Memory.ReadLinear(address, bytes, AccessKind.Read, supervisor: true) is { } f) return f;
        descriptor = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return null;
    }

    /// <summary>A segment register loaded from a legacy 8-byte descriptor.</summary>
    internal static Segment Decode(ushort selector, ulong d)
    {
        uint limit = (uint)(d & 0xFFFF) | (uint)((d >> 32) & 0xF_0000);
        bool g = ((d >> 55) & 1) != 0;
        if (g) limit = (limit << 12) | 0xFFF;
        return new Segment
        {
            Selector = selector,
            Base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24),
            Limit = limit,
            Type = (byte)((d >> 40) & 0xF),
            S = ((d >> 44) & 1) != 0,
            Dpl = (byte)((d >> 45) & 3),
            Present = ((d >> 47) & 1) != 0,
            L = ((d >> 53) & 1) != 0,
            Db = ((d >> 54) & 1) != 0,
            G = g,
        };
    }
}
