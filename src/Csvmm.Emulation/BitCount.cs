using System.Numerics;
using Iced.Intel;

namespace Csvmm.Emulation;

/// <summary>POPCNT, LZCNT, TZCNT, ANDN: register results and flags as the SDM defines them (undefined flags unchanged).</summary>
internal static class BitCount
{
    private static int OperandSize(ref InstructionContext c) => c.Instruction.Op0Register.GetSize();

    /// <summary>POPCNT r, r/m: the number of 1 bits. ZF = (source = 0); CF, OF, SF, AF, PF cleared.</summary>
    public static EmulationOutcome Popcnt(ref InstructionContext c)
    {
        int size = OperandSize(ref c);
        if (c.ReadOperand(1, size, out ulong source) is { } f) return c.Raise(f);
        c.WriteRegister(c.Instruction.Op0Register, (ulong)BitOperations.PopCount(source));
        c.SetFlags(Flags.Status, InstructionContext.If(source == 0, Flags.ZF));
        return c.Complete();
    }

    /// <summary>LZCNT r, r/m: leading zero bits (the operand size when the source is 0). CF = (source = 0), ZF = (result = 0).</summary>
    public static EmulationOutcome Lzcnt(ref InstructionContext c)
    {
        int size = OperandSize(ref c);
        if (c.ReadOperand(1, size, out ulong source) is { } f) return c.Raise(f);
        int bits = 8 * size;
        ulong result = source == 0 ? (ulong)bits : (ulong)(BitOperations.LeadingZeroCount(source) - (64 - bits));
        c.WriteRegister(c.Instruction.Op0Register, result);
        c.SetFlags(Flags.CF | Flags.ZF, InstructionContext.If(source == 0, Flags.CF) | InstructionContext.If(result == 0, Flags.ZF));
        return c.Complete();
    }

    /// <summary>TZCNT r, r/m: trailing zero bits (the operand size when the source is 0). CF = (source = 0), ZF = (result = 0).</summary>
    public static EmulationOutcome Tzcnt(ref InstructionContext c)
    {
        int size = OperandSize(ref c);
        if (c.ReadOperand(1, size, out ulong source) is { } f) return c.Raise(f);
        ulong result = source == 0 ? (ulong)(8 * size) : (ulong)BitOperations.TrailingZeroCount(source);
        c.WriteRegister(c.Instruction.Op0Register, result);
        c.SetFlags(Flags.CF | Flags.ZF, InstructionContext.If(source == 0, Flags.CF) | InstructionContext.If(result == 0, Flags.ZF));
        return c.Complete();
    }

    /// <summary>ANDN r, r1, r/m: NOT r1 AND r/m. SF and ZF from the result; OF and CF cleared; AF and PF undefined.</summary>
    public static EmulationOutcome Andn(ref InstructionContext c)
    {
        int size = OperandSize(ref c);
        if (c.Cpu.Mode is CpuMode.Real or CpuMode.Virtual8086) return c.Raise(GuestFault.Ud); // VEX is not decoded there
        ulong first = c.ReadRegister(c.Instruction.Op1Register);
        if (c.ReadOperand(2, size, out ulong second) is { } f) return c.Raise(f);
        ulong result = InstructionContext.Truncate(~first & second, size);
        c.WriteRegister(c.Instruction.Op0Register, result);
        c.SetFlags(Flags.SF | Flags.ZF | Flags.OF | Flags.CF,
            InstructionContext.Sign(result, size) | InstructionContext.If(result == 0, Flags.ZF));
        return c.Complete();
    }
}

/// <summary>MOVBE and CMPXCHG16B.</summary>
internal static class DataMovement
{
    /// <summary>MOVBE r, m / m, r: a load or store with the bytes reversed. No flags.</summary>
    public static EmulationOutcome Movbe(ref InstructionContext c)
    {
        bool load = c.Instruction.Op0Kind == Iced.Intel.OpKind.Register;
        Iced.Intel.Register register = load ? c.Instruction.Op0Register : c.Instruction.Op1Register;
        int size = register.GetSize();
        if (load)
        {
            if (c.ReadOperand(1, size, out ulong value) is { } f) return c.Raise(f);
            c.WriteRegister(register, Swap(value, size));
        }
        else if (c.WriteMemoryOperand(size, Swap(c.ReadRegister(register), size)) is { } f)
        {
            return c.Raise(f);
        }
        return c.Complete();
    }

    private static ulong Swap(ulong value, int size) => size switch
    {
        2 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((ushort)value),
        4 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)value),
        _ => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(value),
    };

    /// <summary>
    /// CMPXCHG16B m128: compares RDX:RAX with the 16 bytes; equal: ZF = 1 and RCX:RBX is stored; not equal: ZF = 0 and
    /// RDX:RAX is loaded. Atomic against other vCPUs (the host's own LOCK CMPXCHG16B on guest RAM). The operand must be
    /// 16-byte aligned (#GP(0)), and it is a write whatever the comparison gives (write permission is checked).
    /// </summary>
    public static EmulationOutcome Cmpxchg16b(ref InstructionContext c)
    {
        var (segment, offset) = c.MemoryOperand();
        if ((offset & 15) != 0) return c.Raise(GuestFault.Gp());
        if (c.Memory.ToLinear(segment, offset, 16, AccessKind.Write, out ulong linear) is { } sf) return c.Raise(sf);
        if (c.Memory.Translate(linear, AccessKind.Write, supervisor: false, out ulong physical) is { } pf) return c.Raise(pf);
        ulong[] gpr = c.Cpu.Gpr;
        var expected = new UInt128(gpr[CpuState.Rdx], gpr[CpuState.Rax]);
        var desired = new UInt128(gpr[CpuState.Rcx], gpr[CpuState.Rbx]);
        if (!c.Memory.Physical.TryCompareExchange128(physical, expected, desired, out UInt128 previous))
            return c.Raise(GuestAccess.NotRam);
        bool equal = previous == expected;
        if (!equal)
        {
            gpr[CpuState.Rax] = (ulong)previous;
            gpr[CpuState.Rdx] = (ulong)(previous >> 64);
        }
        c.SetFlags(Flags.ZF, InstructionContext.If(equal, Flags.ZF));
        return c.Complete();
    }
}

/// <summary>RDTSCP, XGETBV, CLAC, STAC.</summary>
internal static class SystemInstructions
{
    /// <summary>RDTSCP: EDX:EAX = TSC, ECX = IA32_TSC_AUX[31:0]; #GP(0) with CR4.TSD outside ring 0.</summary>
    public static EmulationOutcome Rdtscp(ref InstructionContext c)
    {
        if ((c.Cpu.Cr4 & ControlBits.Cr4Tsd) != 0 && c.Cpu.Cpl != 0) return c.Raise(GuestFault.Gp());
        ulong tsc = c.Host.ReadTsc();
        ulong[] gpr = c.Cpu.Gpr;
        gpr[CpuState.Rax] = tsc & 0xFFFF_FFFF;
        gpr[CpuState.Rdx] = tsc >> 32;
        gpr[CpuState.Rcx] = c.Host.TscAux & 0xFFFF_FFFF;
        return c.Complete();
    }

    /// <summary>XGETBV: EDX:EAX = XCR[ECX]; only XCR0 exists (#GP(0) otherwise); #UD without CR4.OSXSAVE.</summary>
    public static EmulationOutcome Xgetbv(ref InstructionContext c)
    {
        if ((c.Cpu.Cr4 & ControlBits.Cr4Osxsave) == 0 || c.Instruction.HasLockPrefix) return c.Raise(GuestFault.Ud);
        ulong[] gpr = c.Cpu.Gpr;
        if ((uint)gpr[CpuState.Rcx] != 0) return c.Raise(GuestFault.Gp());
        ulong xcr0 = c.Host.Xcr0;
        gpr[CpuState.Rax] = xcr0 & 0xFFFF_FFFF;
        gpr[CpuState.Rdx] = xcr0 >> 32;
        return c.Complete();
    }

    /// <summary>CLAC: RFLAGS.AC = 0; #UD outside ring 0 (and in real or virtual-8086 mode).</summary>
    public static EmulationOutcome Clac(ref InstructionContext c) => SetAc(ref c, false);

    /// <summary>STAC: RFLAGS.AC = 1; #UD outside ring 0 (and in real or virtual-8086 mode).</summary>
    public static EmulationOutcome Stac(ref InstructionContext c) => SetAc(ref c, true);

    private static EmulationOutcome SetAc(ref InstructionContext c, bool value)
    {
        if (c.Cpu.Mode is CpuMode.Real or CpuMode.Virtual8086 || c.Cpu.Cpl != 0 || c.Instruction.HasLockPrefix)
            return c.Raise(GuestFault.Ud);
        c.SetFlags(Flags.AC, value ? Flags.AC : 0);
        return c.Complete();
    }
}
