namespace Csvmm.Machine.X86;

/// <summary>The model-specific registers csvmm sets or reads (Intel SDM vol. 4, table 2-2; AMD APM vol. 2).</summary>
public static class Msr
{
    public const uint Tsc = 0x10;
    public const uint SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176;
    public const uint MiscEnable = 0x1A0;
    public const uint MtrrDefType = 0x2FF;
    public const uint Star = 0xC000_0081, Lstar = 0xC000_0082, Cstar = 0xC000_0083, SyscallMask = 0xC000_0084;
    public const uint KernelGsBase = 0xC000_0102;
    public const uint TscAux = 0xC000_0103;
    public const uint Pat = 0x277;
    public const uint TscDeadline = 0x6E0;
    /// <summary>KVM's paravirtual MSRs (Documentation/virt/kvm/x86/msr.rst): wall clock, system time, async PF, steal time, PV EOI.</summary>
    public const uint KvmWallClockNew = 0x4B56_4D00, KvmSystemTimeNew = 0x4B56_4D01, KvmAsyncPfEn = 0x4B56_4D02,
        KvmStealTime = 0x4B56_4D03, KvmPvEoiEn = 0x4B56_4D04;

    /// <summary>
    /// The MSRs a snapshot carries (those of them the host's KVM reads back; EFER and APIC_BASE travel in the sregs):
    /// the TSC, the SYSENTER/SYSCALL entry points, KERNEL_GS_BASE, TSC_AUX, MISC_ENABLE, PAT, the TSC deadline and KVM's
    /// paravirtual clock and interrupt MSRs.
    /// </summary>
    public static readonly uint[] Saved =
    [
        Tsc, SysenterCs, SysenterEsp, SysenterEip, Star, Lstar, Cstar, SyscallMask, KernelGsBase, TscAux, MiscEnable, Pat,
        MtrrDefType, TscDeadline, KvmWallClockNew, KvmSystemTimeNew, KvmAsyncPfEn, KvmStealTime, KvmPvEoiEn,
    ];
}
