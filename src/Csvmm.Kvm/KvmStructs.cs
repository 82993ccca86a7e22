using System.Runtime.InteropServices;

// Byte-for-byte mirrors of <linux/kvm.h> (x86). Names follow the C fields so the layout test can
// compare every offset against a gcc-compiled program; see tests/Csvmm.Kvm.Tests/LayoutTests.cs.
#pragma warning disable IDE1006 // C field names
namespace Csvmm.Kvm;

[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    public ulong rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    public ulong r8, r9, r10, r11, r12, r13, r14, r15;
    public ulong rip, rflags;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    public ulong @base;
    public uint limit;
    public ushort selector;
    public byte type, present, dpl, db, s, l, g, avl, unusable, padding;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmDtable
{
    public ulong @base;
    public ushort limit;
    public fixed ushort padding[3];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmSregs
{
    public KvmSegment cs, ds, es, fs, gs, ss, tr, ldt;
    public KvmDtable gdt, idt;
    public ulong cr0, cr2, cr3, cr4, cr8, efer, apic_base;
    public fixed ulong interrupt_bitmap[4];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmFpu
{
    public fixed byte fpr[128];
    public ushort fcw, fsw;
    public byte ftwx, pad1;
    public ushort last_opcode;
    public ulong last_ip, last_dp;
    public fixed byte xmm[256];
    public uint mxcsr, pad2;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmUserspaceMemoryRegion
{
    public uint slot, flags;
    public ulong guest_phys_addr, memory_size, userspace_addr;
    public const uint FlagLogDirtyPages = 1, FlagReadonly = 2;
}

/// <summary>struct kvm_dirty_log: KVM_GET_DIRTY_LOG's argument (the bitmap pointer shares a union with a u64).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDirtyLog
{
    public uint slot, padding1;
    /// <summary>Userspace address of the bitmap: one bit per page of the slot, in 64-bit words.</summary>
    public ulong dirty_bitmap;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmCpuidEntry2
{
    public uint function, index, flags, eax, ebx, ecx, edx;
    public fixed uint padding[3];
    public const uint FlagSignificantIndex = 1;
}

/// <summary>Header of struct kvm_cpuid2; <c>nent</c> entries of <see cref="KvmCpuidEntry2"/> follow it in memory.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCpuid2
{
    public uint nent, padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrEntry
{
    public uint index, reserved;
    public ulong data;
}

/// <summary>Header of struct kvm_msrs; <c>nmsrs</c> entries of <see cref="KvmMsrEntry"/> follow it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrs
{
    public uint nmsrs, pad;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmPitConfig
{
    public uint flags;
    public fixed uint pad[15];
    public const uint FlagSpeakerDummy = 1;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqLevel
{
    public uint irq;   // union { __u32 irq; __s32 status; }
    public uint level;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIoeventfd
{
    public ulong datamatch, addr;
    public uint len;
    public int fd;
    public uint flags;
    public fixed byte pad[36];
    public const uint FlagDatamatch = 1 << 0, FlagPio = 1 << 1, FlagDeassign = 1 << 2;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIrqfd
{
    public uint fd, gsi, flags, resamplefd;
    public fixed byte pad[16];
    public const uint FlagDeassign = 1 << 0, FlagResample = 1 << 1;
}

/// <summary>struct kvm_irq_routing_entry; the union <c>u</c> is kept as its 8-word pad with typed accessors.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIrqRoutingEntry
{
    public uint gsi, type, flags, pad;
    public fixed uint u[8];

    public const uint TypeIrqchip = 1, TypeMsi = 2;
    public const uint IrqchipPicMaster = 0, IrqchipPicSlave = 1, IrqchipIoapic = 2;

    /// <summary>A route from <paramref name="gsi"/> to a pin of the in-kernel PIC or IOAPIC.</summary>
    public static KvmIrqRoutingEntry Irqchip(uint gsi, uint irqchip, uint pin)
    {
        var e = new KvmIrqRoutingEntry { gsi = gsi, type = TypeIrqchip };
        e.u[0] = irqchip;
        e.u[1] = pin;
        return e;
    }

    /// <summary>A route from <paramref name="gsi"/> to an MSI message.</summary>
    public static KvmIrqRoutingEntry Msi(uint gsi, ulong address, uint data)
    {
        var e = new KvmIrqRoutingEntry { gsi = gsi, type = TypeMsi };
        e.u[0] = (uint)address;
        e.u[1] = (uint)(address >> 32);
        e.u[2] = data;
        return e;
    }
}

/// <summary>Header of struct kvm_irq_routing; <c>nr</c> entries of <see cref="KvmIrqRoutingEntry"/> follow it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqRouting
{
    public uint nr, flags;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmEnableCap
{
    public uint cap, flags;
    public fixed ulong args[4];
    public fixed byte pad[64];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmLapicState
{
    public fixed byte regs[1024];
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmMpState
{
    public uint mp_state;
    public const uint Runnable = 0, Uninitialized = 1, InitReceived = 2, Halted = 3, SipiReceived = 4;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmVcpuEvents
{
    // exception
    public byte exception_injected, exception_nr, exception_has_error_code, exception_pending;
    public uint exception_error_code;
    // interrupt
    public byte interrupt_injected, interrupt_nr, interrupt_soft, interrupt_shadow;
    // nmi
    public byte nmi_injected, nmi_pending, nmi_masked, nmi_pad;
    public uint sipi_vector;
    public uint flags;
    // smi
    public byte smi_smm, smi_pending, smi_smm_inside_nmi, smi_latched_init;
    // triple_fault
    public byte triple_fault_pending;
    public fixed byte reserved[26];
    public byte exception_has_payload;
    public ulong exception_payload;
}

/// <summary>The fixed head of struct kvm_run (the exit union starts at <see cref="KvmRunLayout.ExitUnion"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmRunHeader
{
    public byte request_interrupt_window, immediate_exit;
    public fixed byte padding1[6];
    public uint exit_reason;
    public byte ready_for_interrupt_injection, if_flag;
    public ushort flags;
    public ulong cr8, apic_base;
}

/// <summary>Exit-union members of struct kvm_run that csvmm reads; each sits at <see cref="KvmRunLayout.ExitUnion"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRunIo
{
    public byte direction, size;
    public ushort port;
    public uint count;
    public ulong data_offset;
    public const byte In = 0, Out = 1;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmRunMmio
{
    public ulong phys_addr;
    public fixed byte data[8];
    public uint len;
    public byte is_write;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmRunInternal
{
    public uint suberror, ndata;
    public fixed ulong data[16];
}

/// <summary>
/// kvm_run.emulation_failure: the same exit as <see cref="KvmRunInternal"/> for suberror 1
/// (KVM_INTERNAL_ERROR_EMULATION); with <see cref="FlagInstructionBytes"/> in flags, the bytes KVM
/// fetched at RIP follow (up to 15).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmRunEmulationFailure
{
    public const uint SuberrorEmulation = 1;
    public const ulong FlagInstructionBytes = 1;
    public const int MaxInstructionBytes = 15;

    public uint suberror, ndata;
    public ulong flags;
    public byte insn_size;
    public fixed byte insn_bytes[15];
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmRunFailEntry
{
    public ulong hardware_entry_failure_reason;
    public uint cpu;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmRunSystemEvent
{
    public uint type, ndata;
    public fixed ulong data[16];
    public const uint Shutdown = 1, Reset = 2, Crash = 3;
}

/// <summary>Offsets inside struct kvm_run (x86), proven by the layout test.</summary>
public static class KvmRunLayout
{
    public const int ExitUnion = 32;
    public const int ExitUnionSize = 256;
    public const int KvmValidRegs = 288;
    public const int KvmDirtyRegs = 296;
    /// <summary>Offset of the <c>s.regs</c> union (<see cref="KvmSyncRegs"/>, KVM_CAP_SYNC_REGS).</summary>
    public const int SyncRegs = 304;
}

/// <summary>
/// struct kvm_sync_regs (x86): the registers KVM copies into kvm_run at every exit for the sets named in
/// kvm_valid_regs, and loads from it at the next KVM_RUN for the sets named in kvm_dirty_regs (KVM_CAP_SYNC_REGS).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSyncRegs
{
    public const ulong Regs = 1, Sregs = 2, Events = 4;

    public KvmRegs regs;
    public KvmSregs sregs;
    public KvmVcpuEvents events;
}

/// <summary>KVM_EXIT_* reasons (linux/kvm.h).</summary>
public enum KvmExitReason : uint
{
    Unknown = 0,
    Exception = 1,
    Io = 2,
    Hypercall = 3,
    Debug = 4,
    Hlt = 5,
    Mmio = 6,
    IrqWindowOpen = 7,
    Shutdown = 8,
    FailEntry = 9,
    Intr = 10,
    SetTpr = 11,
    TprAccess = 12,
    Nmi = 16,
    InternalError = 17,
    SystemEvent = 24,
    IoapicEoi = 26,
    X86Rdmsr = 29,
    X86Wrmsr = 30,
}

// ---- The state a snapshot or a migration carries beyond registers (linux/kvm.h, x86).

/// <summary>struct kvm_xsave: the XSAVE area as KVM_GET_XSAVE returns it (4 KiB; the legacy FXSAVE image in its first 512 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmXsave
{
    public fixed uint region[1024];
}

/// <summary>struct kvm_xcrs: up to 16 extended control registers; entry i is <c>xcrs[4i]</c> = xcr, <c>[4i+1]</c> reserved, <c>[4i+2..4i+3]</c> the 64-bit value.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmXcrs
{
    public uint nr_xcrs, flags;
    /// <summary>struct kvm_xcr xcrs[KVM_MAX_XCRS], 16 bytes each: u32 xcr, u32 reserved, u64 value.</summary>
    public fixed uint xcrs[64];
    public fixed ulong padding[16];

    /// <summary>Entries the struct holds (KVM_MAX_XCRS).</summary>
    public const int MaxXcrs = 16;

    public readonly (uint Xcr, ulong Value) Get(int i)
    {
        if ((uint)i >= MaxXcrs) throw new ArgumentOutOfRangeException(nameof(i));
        return (xcrs[4 * i], xcrs[4 * i + 2] | ((ulong)xcrs[4 * i + 3] << 32));
    }
}

/// <summary>struct kvm_debugregs: DR0-3, DR6, DR7.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmDebugregs
{
    public fixed ulong db[4];
    public ulong dr6, dr7, flags;
    public fixed ulong reserved[9];
}

/// <summary>struct kvm_irqchip: one in-kernel interrupt controller's state (<see cref="KvmIrqRoutingEntry.IrqchipPicMaster"/>,
/// PicSlave or Ioapic in <c>chip_id</c>); the union is kept as its 512 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIrqchip
{
    public uint chip_id, pad;
    public fixed byte chip[512];
}

/// <summary>struct kvm_pit_state2: the in-kernel PIT's three channels (struct kvm_pit_channel_state, 24 bytes each, kept as bytes) and flags.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmPitState2
{
    public fixed byte channels[72];
    public uint flags;
    public fixed uint reserved[9];
}

/// <summary>struct kvm_clock_data: kvmclock's time base (KVM_GET_CLOCK / KVM_SET_CLOCK).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmClockData
{
    public ulong clock;
    public uint flags, pad0;
    public ulong realtime, host_tsc;
    public fixed uint pad[4];
}
