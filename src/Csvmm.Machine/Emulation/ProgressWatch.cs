using Csvmm.Emulation;
using Csvmm.Kvm;

namespace Csvmm.Machine.Emulation;

/// <summary>
/// Tells an emulation loop that cannot end from a guest that merely runs the same emulated instruction often. An
/// emulation is a repeat of the last one when it is the same instruction at the same RIP with the same outcome, the
/// vCPU's registers were the same when KVM gave up on it, and the vCPU made no other exit in between: then the guest
/// did nothing observable since, and will do the same again. <see cref="VcpuEmulator.NoProgressLimit"/> repeats in a
/// row stop the VM. A guest loop that calls an iretd-returning routine (SYSLINUX's real-mode thunks do, thousands of
/// times, between its disk reads) changes registers or exits between the calls, and goes on.
/// </summary>
internal sealed class ProgressWatch
{
    private KvmRegs _lastRegs;
    private EmulationOutcome _lastOutcome;
    private long _lastExits = -2;
    private bool _any;

    /// <summary>How many times in a row the same emulation came back with nothing happening in between.</summary>
    public int Repeats { get; private set; }

    /// <summary>
    /// Records one emulation: <paramref name="regsAtEntry"/> as KVM left them, <paramref name="exits"/> the vCPU's exit
    /// count including this emulation failure's exit. Returns the repeat count (1 for an emulation that is new).
    /// </summary>
    public int Record(in KvmRegs regsAtEntry, in EmulationOutcome outcome, long exits)
    {
        bool repeat = _any && exits == _lastExits + 1 && outcome == _lastOutcome && Same(regsAtEntry, _lastRegs);
        Repeats = repeat ? Repeats + 1 : 1;
        _lastRegs = regsAtEntry;
        _lastOutcome = outcome;
        _lastExits = exits;
        _any = true;
        return Repeats;
    }

    private static bool Same(in KvmRegs a, in KvmRegs b) =>
        a.rip == b.rip && a.rflags == b.rflags && a.rsp == b.rsp && a.rbp == b.rbp
        && a.rax == b.rax && a.rbx == b.rbx && a.rcx == b.rcx && a.rdx == b.rdx && a.rsi == b.rsi && a.rdi == b.rdi
        && a.r8 == b.r8 && a.r9 == b.r9 && a.r10 == b.r10 && a.r11 == b.r11
        && a.r12 == b.r12 && a.r13 == b.r13 && a.r14 == b.r14 && a.r15 == b.r15;
}
