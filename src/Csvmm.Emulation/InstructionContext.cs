using System.Buffers.Binary;
using Iced.Intel;

namespace Csvmm.Emulation;

/// <summary>
/// One instruction being emulated: the decoded instruction, the CPU state, memory and host, with the operand and
/// flag helpers the handlers share. Handlers change <see cref="Cpu"/> only once nothing can fault any more, and
/// finish with <see cref="Complete"/> (RIP past the instruction).
/// </summary>
public ref struct InstructionContext
{
    public readonly CpuState Cpu;
    public readonly GuestAccess Memory;
    public readonly IEmulationHost Host;
    public readonly Instruction Instruction;

    public InstructionContext(CpuState cpu, GuestAccess memory, IEmulationHost host, in Instruction instruction)
    {
        Cpu = cpu;
        Memory = memory;
        Host = host;
        Instruction = instruction;
    }

    public readonly Mnemonic Mnemonic => Instruction.Mnemonic;

    /// <summary>Moves RIP past the instruction (wrapping at the code size), clears RF, and reports completion.</summary>
    public readonly EmulationOutcome Complete()
    {
        ulong next = Instruction.NextIP;
        Cpu.Rip = Cpu.Bitness switch { 64 => next, 32 => next & 0xFFFF_FFFF, _ => next & 0xFFFF };
        Cpu.Rflags &= ~Flags.RF;
        return EmulationOutcome.Done(Mnemonic);
    }

    public readonly EmulationOutcome Raise(GuestFault fault) => EmulationOutcome.Raise(Mnemonic, fault);

    // ---- registers ----------------------------------------------------------------------------------------

    /// <summary>The value of a general register of any size (AH-BH included), zero-extended.</summary>
    public readonly ulong ReadRegister(Register register)
    {
        (int index, int size, bool high) = Locate(register);
        ulong full = Cpu.Gpr[index];
        return high ? (full >> 8) & 0xFF : Truncate(full, size);
    }

    /// <summary>Writes a general register as the processor does: 32-bit writes zero the upper half, 8/16-bit writes merge.</summary>
    public readonly void WriteRegister(Register register, ulong value)
    {
        (int index, int size, bool high) = Locate(register);
        ref ulong full = ref Cpu.Gpr[index];
        full = size switch
        {
            8 => value,
            4 => value & 0xFFFF_FFFF,
            2 => (full & ~0xFFFFUL) | (value & 0xFFFF),
            _ => high ? (full & ~0xFF00UL) | ((value & 0xFF) << 8) : (full & ~0xFFUL) | (value & 0xFF),
        };
    }

    private static (int Index, int Size, bool High) Locate(Register register)
    {
        if (register is Register.AH or Register.CH or Register.DH or Register.BH)
            return (register - Register.AH, 1, true);
        if (!register.IsGPR()) throw new InvalidOperationException($"{register} is not a general register");
        return (register.GetFullRegister().GetNumber(), register.GetSize(), false);
    }

    public static ulong Truncate(ulong value, int size) => size switch
    {
        8 => value,
        4 => value & 0xFFFF_FFFF,
        2 => value & 0xFFFF,
        _ => value & 0xFF,
    };

    // ---- memory operands --------------------------------------------------------------------------------------

    /// <summary>The segment and offset of the memory operand (address-size wrap applied), for the handlers' reads and writes.</summary>
    public readonly (SegmentName Segment, ulong Offset) MemoryOperand()
    {
        var provider = new OffsetProvider(Cpu);
        int operand = -1;
        for (int i = 0; i < Instruction.OpCount; i++)
            if (Instruction.GetOpKind(i) == OpKind.Memory) { operand = i; break; }
        if (operand < 0 || !Instruction.TryGetVirtualAddress(operand, 0, provider, out ulong offset))
            throw new InvalidOperationException($"{Instruction} has no memory operand the emulator can address");
        SegmentName segment = Instruction.MemorySegment switch
        {
            Register.ES => SegmentName.Es,
            Register.CS => SegmentName.Cs,
            Register.SS => SegmentName.Ss,
            Register.FS => SegmentName.Fs,
            Register.GS => SegmentName.Gs,
            _ => SegmentName.Ds,
        };
        return (segment, offset);
    }

    /// <summary>Reads operand <paramref name="operand"/> (a register or memory) of <paramref name="size"/> bytes.</summary>
    public readonly GuestFault? ReadOperand(int operand, int size, out ulong value)
    {
        if (Instruction.GetOpKind(operand) == OpKind.Register)
        {
            value = ReadRegister(Instruction.GetOpRegister(operand));
            return null;
        }
        Span<byte> bytes = stackalloc byte[8];
        var (segment, offset) = MemoryOperand();
        if (AlignmentCheck(offset, size) is { } ac) { value = 0; return ac; }
        GuestFault? f = Memory.Read(segment, offset, bytes[..size]);
        value = f is null ? BinaryPrimitives.ReadUInt64LittleEndian(bytes) & (size == 8 ? ulong.MaxValue : (1UL << (8 * size)) - 1) : 0;
        return f;
    }

    /// <summary>Writes a memory operand of <paramref name="size"/> bytes (a register destination goes through <see cref="WriteRegister"/>).</summary>
    public readonly GuestFault? WriteMemoryOperand(int size, ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        var (segment, offset) = MemoryOperand();
        if (AlignmentCheck(offset, size) is { } ac) return ac;
        return Memory.Write(segment, offset, bytes[..size]);
    }

    /// <summary>#AC(0) for a misaligned access at CPL 3 with CR0.AM and RFLAGS.AC set.</summary>
    public readonly GuestFault? AlignmentCheck(ulong offset, int size) =>
        Cpu.Cpl == 3 && (Cpu.Cr0 & ControlBits.Cr0Am) != 0 && (Cpu.Rflags & Flags.AC) != 0 && (offset & (ulong)(size - 1)) != 0
            ? new GuestFault(GuestFault.AC, 0)
            : null;

    // ---- flags -----------------------------------------------------------------------------------------------

    /// <summary>Sets the flags in <paramref name="mask"/> to the bits of <paramref name="values"/>; others unchanged.</summary>
    public readonly void SetFlags(ulong mask, ulong values) => Cpu.Rflags = (Cpu.Rflags & ~mask) | (values & mask) | Flags.Fixed;

    public static ulong If(bool condition, ulong flag) => condition ? flag : 0;

    /// <summary>Parity of the low byte (PF is set for an even number of 1 bits).</summary>
    public static ulong Parity(ulong value) => (System.Numerics.BitOperations.PopCount(value & 0xFF) & 1) == 0 ? Flags.PF : 0;

    public static ulong Sign(ulong value, int size) => (value >> (8 * size - 1) & 1) != 0 ? Flags.SF : 0;

    private sealed class OffsetProvider(CpuState cpu) : IVATryGetRegisterValueProvider
    {
        public bool TryGetRegisterValue(Register register, int elementIndex, int elementSize, out ulong value)
        {
            if (register.IsSegmentRegister())
            {
                value = 0; // offsets only: the segment base and its checks come after, in GuestAccess
                return true;
            }
            if (register == Register.RIP || register == Register.EIP)
            {
                value = cpu.Rip;
                return true;
            }
            if (!register.IsGPR())
            {
                value = 0;
                return false;
            }
            ulong full = cpu.Gpr[register.GetFullRegister().GetNumber()];
            value = Truncate(full, register.GetSize());
            return true;
        }
    }
}
