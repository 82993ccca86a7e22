namespace Csvmm.Emulation;

/// <summary>The processor mode the instruction is decoded and executed in.</summary>
public enum CpuMode
{
    /// <summary>CR0.PE = 0.</summary>
    Real,
    /// <summary>Protected mode with RFLAGS.VM = 1.</summary>
    Virtual8086,
    /// <summary>Protected (or compatibility) mode, 16-bit code segment.</summary>
    Protected16,
    /// <summary>Protected (or compatibility) mode, 32-bit code segment.</summary>
    Protected32,
    /// <summary>IA-32e mode, 64-bit code segment (CS.L = 1).</summary>
    Long64,
}

/// <summary>A segment register as KVM describes it (struct kvm_segment): the limit is in bytes, already scaled by G.</summary>
public struct Segment
{
    public ushort Selector;
    public ulong Base;
    public uint Limit;
    /// <summary>The descriptor's 4-bit type (bit 3 set: code; for data bit 1 = writable, bit 2 = expand-down).</summary>
    public byte Type;
    /// <summary>S: code/data (true) or system segment.</summary>
    public bool S;
    public byte Dpl;
    public bool Present;
    /// <summary>D/B: 32-bit default operand size (code) / big (data, stack).</summary>
    public bool Db;
    /// <summary>L: 64-bit code segment.</summary>
    public bool L;
    public bool G;
    public bool Unusable;

    /// <summary>A flat 4 GiB segment of <paramref name="type"/> (tests and real-mode style loads).</summary>
    public static Segment Flat(ushort selector, byte type, bool db = true, bool l = false, byte dpl = 0) => new()
    {
        Selector = selector, Base = 0, Limit = 0xFFFF_FFFF, Type = type, S = true, Dpl = dpl, Present = true, Db = db, L = l, G = true,
    };
}

/// <summary>GDTR / IDTR.</summary>
public struct DescriptorTable
{
    public ulong Base;
    public ushort Limit;
}

/// <summary>RFLAGS bits.</summary>
public static class Flags
{
    public const ulong CF = 1 << 0, PF = 1 << 2, AF = 1 << 4, ZF = 1 << 6, SF = 1 << 7, TF = 1 << 8, IF = 1 << 9, DF = 1 << 10,
        OF = 1 << 11, Iopl = 3 << 12, NT = 1 << 14, RF = 1 << 16, VM = 1 << 17, AC = 1 << 18, VIF = 1 << 19, VIP = 1 << 20, ID = 1 << 21;

    /// <summary>Bit 1 always reads 1.</summary>
    public const ulong Fixed = 1 << 1;

    /// <summary>The six arithmetic flags.</summary>
    public const ulong Status = CF | PF | AF | ZF | SF | OF;
}

/// <summary>Control register bits the emulator consults.</summary>
public static class ControlBits
{
    public const ulong Cr0Pe = 1 << 0, Cr0Wp = 1 << 16, Cr0Am = 1 << 18, Cr0Pg = 1UL << 31;
    public const ulong Cr4Tsd = 1 << 2, Cr4Pse = 1 << 4, Cr4Pae = 1 << 5, Cr4Osxsave = 1 << 18, Cr4Smep = 1 << 20, Cr4Smap = 1 << 21;
    public const ulong EferLme = 1 << 8, EferLma = 1 << 10, EferNxe = 1 << 11;
}

/// <summary>
/// The architectural state the emulator reads and changes: general registers, RIP, RFLAGS, segments, descriptor
/// tables and control registers — what KVM_GET_REGS and KVM_GET_SREGS return. The machine copies it in before an
/// emulation and back after; tests build it by hand.
/// </summary>
public sealed class CpuState
{
    /// <summary>RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15: the x86 encoding order.</summary>
    public readonly ulong[] Gpr = new ulong[16];
    public ulong Rip;
    public ulong Rflags = Flags.Fixed;
    public Segment Cs, Ds, Es, Fs, Gs, Ss, Tr, Ldt;
    public DescriptorTable Gdt, Idt;
    public ulong Cr0, Cr2, Cr3, Cr4, Efer;

    public const int Rax = 0, Rcx = 1, Rdx = 2, Rbx = 3, Rsp = 4, Rbp = 5, Rsi = 6, Rdi = 7;

    /// <summary>The mode the CPU is in, from CR0.PE, RFLAGS.VM, EFER.LMA and the code segment.</summary>
    public CpuMode Mode =>
        (Cr0 & ControlBits.Cr0Pe) == 0 ? CpuMode.Real
        : (Rflags & Flags.VM) != 0 ? CpuMode.Virtual8086
        : (Efer & ControlBits.EferLma) != 0 && Cs.L ? CpuMode.Long64
        : Cs.Db ? CpuMode.Protected32 : CpuMode.Protected16;

    /// <summary>The current privilege level: 0 in real mode, 3 in virtual-8086 mode, else the stack segment's DPL (= CS.DPL for code that got there legally).</summary>
    public int Cpl => Mode switch
    {
        CpuMode.Real => 0,
        CpuMode.Virtual8086 => 3,
        _ => Ss.Dpl,
    };

    /// <summary>Decoder bitness for the current mode.</summary>
    public int Bitness => Mode switch
    {
        CpuMode.Long64 => 64,
        CpuMode.Protected32 => 32,
        _ => 16,
    };
}
