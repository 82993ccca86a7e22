using Csvmm.Boot;
using Csvmm.Kvm;

namespace Csvmm.Machine.X86;

/// <summary>Initial vCPU state: boot MSRs, FPU, LAPIC LINT pins, and the registers of each boot entry mode.</summary>
public static class VcpuSetup
{
    /// <summary>The MSR values a freshly booted x86-64 CPU should have (as Firecracker sets them).</summary>
    public static KvmMsrEntry[] BootMsrs() =>
    [
        new() { index = Msr.SysenterCs }, new() { index = Msr.SysenterEsp }, new() { index = Msr.SysenterEip },
        new() { index = Msr.Star }, new() { index = Msr.Cstar }, new() { index = Msr.KernelGsBase },
        new() { index = Msr.SyscallMask }, new() { index = Msr.Lstar }, new() { index = Msr.Tsc },
        new() { index = Msr.MiscEnable, data = 1 },                     // fast strings
        new() { index = Msr.MtrrDefType, data = (1UL << 11) | 6 },       // MTRRs enabled, default write-back
    ];

    /// <summary>x87 control word and MXCSR at their architectural reset values.</summary>
    public static KvmFpu BootFpu() => new() { fcw = 0x37F, mxcsr = 0x1F80 };

    private const int LvtLint0 = 0x350, LvtLint1 = 0x360;
    private const uint DeliveryExtInt = 7 << 8, DeliveryNmi = 4 << 8;

    /// <summary>LINT0 = ExtINT (the 8259 PIC's output), LINT1 = NMI, as on a PC.</summary>
    public static unsafe void ConfigureLints(ref KvmLapicState lapic)
    {
        fixed (byte* regs = lapic.regs)
        {
            uint* lint0 = (uint*)(regs + LvtLint0);
            uint* lint1 = (uint*)(regs + LvtLint1);
            *lint0 = (*lint0 & ~0x700u) | DeliveryExtInt;
            *lint1 = (*lint1 & ~0x700u) | DeliveryNmi;
        }
    }

    /// <summary>The kvm_segment KVM wants for a GDT descriptor (decoded by the boot layer) loaded with <paramref name="selector"/>.</summary>
    public static KvmSegment SegmentFromDescriptor(ulong raw, ushort selector)
    {
        var d = SegmentDescriptor.Decode(raw);
        return new KvmSegment
        {
            @base = d.Base,
            limit = d.Limit,
            selector = selector,
            type = d.Type,
            s = d.S ? (byte)1 : (byte)0,
            dpl = d.Dpl,
            present = d.Present ? (byte)1 : (byte)0,
            avl = d.Avl ? (byte)1 : (byte)0,
            l = d.L ? (byte)1 : (byte)0,
            db = d.Db ? (byte)1 : (byte)0,
            g = d.G ? (byte)1 : (byte)0,
            unusable = d.Present ? (byte)0 : (byte)1,
        };
    }

    /// <summary>Long mode with paging on identity tables, as the Linux 64-bit boot protocol requires.</summary>
    public static void Linux64(ref KvmRegs regs, ref KvmSregs sregs, ulong entry, ulong bootParams,
        ulong gdtBase, ushort gdtLimit, ulong idtBase, ulong pml4,
        ulong codeDescriptor, ushort codeSelector, ulong dataDescriptor, ushort dataSelector)
    {
        FlatSegments(ref sregs, gdtBase, gdtLimit, idtBase, codeDescriptor, codeSelector, dataDescriptor, dataSelector);
        sregs.cr0 = BootControlRegisters.LongModeCr0;
        sregs.cr3 = pml4;
        sregs.cr4 = BootControlRegisters.LongModeCr4;
        sregs.efer = BootControlRegisters.LongModeEfer;
        regs = new KvmRegs { rflags = 2, rip = entry, rsi = bootParams, rsp = 0x8FF0, rbp = 0x8FF0 };
    }

    /// <summary>32-bit protected mode, paging off, flat segments: the PVH entry state (EBX = hvm_start_info).</summary>
    public static void Pvh32(ref KvmRegs regs, ref KvmSregs sregs, ulong entry, ulong startInfo,
        ulong gdtBase, ushort gdtLimit, ulong idtBase,
        ulong codeDescriptor, ushort codeSelector, ulong dataDescriptor, ushort dataSelector)
    {
        FlatSegments(ref sregs, gdtBase, gdtLimit, idtBase, codeDescriptor, codeSelector, dataDescriptor, dataSelector);
        sregs.cr0 = BootControlRegisters.ProtectedModeCr0;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
        regs = new KvmRegs { rflags = 2, rip = entry, rbx = startInfo };
    }

    private static void FlatSegments(ref KvmSregs sregs, ulong gdtBase, ushort gdtLimit, ulong idtBase,
        ulong codeDescriptor, ushort codeSelector, ulong dataDescriptor, ushort dataSelector)
    {
        var code = SegmentFromDescriptor(codeDescriptor, codeSelector);
        var data = SegmentFromDescriptor(dataDescriptor, dataSelector);
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.tr = new KvmSegment { @base = 0, limit = 0xFFFF, selector = 0, type = 11, present = 1, s = 0 };
        sregs.gdt = new KvmDtable { @base = gdtBase, limit = gdtLimit };
        sregs.idt = new KvmDtable { @base = idtBase, limit = 0 };
    }
}
