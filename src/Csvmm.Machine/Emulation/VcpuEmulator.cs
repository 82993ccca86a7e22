using Csvmm.Emulation;
using Csvmm.Kvm;
using Csvmm.Memory;

namespace Csvmm.Machine.Emulation;

/// <summary>Guest RAM for the emulator: reads anywhere in a region, writes and the 16-byte compare-exchange only to RAM, never to ROM.</summary>
public sealed class EmulatedRam(GuestMemory memory) : IGuestPhysicalMemory
{
    public bool TryRead(ulong address, Span<byte> destination)
    {
        if (!memory.TryGetSpan(new GuestAddress(address), destination.Length, out Span<byte> source)) return false;
        source.CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong address, ReadOnlySpan<byte> source)
    {
        var at = new GuestAddress(address);
        GuestRegion? region = memory.FindRegion(at, (ulong)source.Length);
        if (region is null || region.ReadOnly || !memory.TryGetSpan(at, source.Length, out Span<byte> destination)) return false;
        source.CopyTo(destination);
        return true;
    }

    public bool TryCompareExchange128(ulong address, UInt128 expected, UInt128 desired, out UInt128 previous) =>
        memory.TryCompareExchange128(new GuestAddress(address), expected, desired, out previous);
}

/// <summary>Moves architectural state between KVM's structs and the emulator's <see cref="CpuState"/>.</summary>
internal static class KvmCpuState
{
    public static void Load(CpuState cpu, in KvmRegs r, in KvmSregs s)
    {
        ulong[] g = cpu.Gpr;
        (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]) = (r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi);
        (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]) = (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
        cpu.Rip = r.rip;
        cpu.Rflags = r.rflags;
        cpu.Cs = From(s.cs); cpu.Ds = From(s.ds); cpu.Es = From(s.es); cpu.Fs = From(s.fs);
        cpu.Gs = From(s.gs); cpu.Ss = From(s.ss); cpu.Tr = From(s.tr); cpu.Ldt = From(s.ldt);
        cpu.Gdt = new DescriptorTable { Base = s.gdt.@base, Limit = s.gdt.limit };
        cpu.Idt = new DescriptorTable { Base = s.idt.@base, Limit = s.idt.limit };
        (cpu.Cr0, cpu.Cr2, cpu.Cr3, cpu.Cr4, cpu.Efer) = (s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
    }

    public static void Store(CpuState cpu, ref KvmRegs r, ref KvmSregs s)
    {
        ulong[] g = cpu.Gpr;
        (r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
        r.rip = cpu.Rip;
        r.rflags = cpu.Rflags;
        s.cs = To(cpu.Cs); s.ds = To(cpu.Ds); s.es = To(cpu.Es); s.fs = To(cpu.Fs);
        s.gs = To(cpu.Gs); s.ss = To(cpu.Ss); s.tr = To(cpu.Tr); s.ldt = To(cpu.Ldt);
        s.cr2 = cpu.Cr2;
    }

    private static Segment From(in KvmSegment k) => new()
    {
        Selector = k.selector, Base = k.@base, Limit = k.limit, Type = k.type, S = k.s != 0, Dpl = k.dpl, Present = k.present != 0,
        Db = k.db != 0, L = k.l != 0, G = k.g != 0, Unusable = k.unusable != 0,
    };

    private static KvmSegment To(in Segment s) => new()
    {
        selector = s.Selector, @base = s.Base, limit = s.Limit, type = s.Type, s = (byte)(s.S ? 1 : 0), dpl = s.Dpl,
        present = (byte)(s.Present ? 1 : 0), db = (byte)(s.Db ? 1 : 0), l = (byte)(s.L ? 1 : 0), g = (byte)(s.G ? 1 : 0),
        unusable = (byte)(s.Unusable ? 1 : 0),
    };

    /// <summary>
    /// The vCPU events that deliver <paramref name="outcome"/>: an exception (with its error code) or, for a software
    /// interrupt, an interrupt of its vector — injected with RIP already past the instruction, so the handler returns
    /// after it. Everything else in <paramref name="events"/> (NMI, SMI, shadow) stays as KVM reported it.
    /// </summary>
    public static void Inject(ref KvmVcpuEvents events, in EmulationOutcome outcome)
    {
        if (outcome.Status == EmulationStatus.Fault)
        {
            events.exception_injected = 1;
            events.exception_pending = 0;
            events.exception_nr = outcome.Fault.Vector;
            events.exception_has_error_code = (byte)(outcome.Fault.ErrorCode is null ? 0 : 1);
            events.exception_error_code = outcome.Fault.ErrorCode ?? 0;
        }
        else if (outcome.Status == EmulationStatus.SoftwareInterrupt)
        {
            events.interrupt_injected = 1;
            events.interrupt_nr = outcome.Vector;
            events.interrupt_soft = 0;
        }
    }
}

/// <summary>The emulator's view of the TSC, TSC_AUX and XCR0 of one vCPU.</summary>
internal sealed class KvmEmulationHost(KvmVcpu vcpu) : IEmulationHost
{

    public ulong ReadTsc() => ReadMsr(X86.Msr.Tsc);

    public ulong TscAux => ReadMsr(X86.Msr.TscAux);

    /// <summary>
    /// XCR0 at its reset value (x87 only): where KVM cannot emulate XGETBV it cannot emulate XSETBV either, so the guest
    /// has not changed it. (Once csvmm emulates XSETBV this reads KVM_GET_XCRS.)
    /// </summary>
    public ulong Xcr0 => 1;

    private ulong ReadMsr(uint index)
    {
        Span<KvmMsrEntry> e = [new KvmMsrEntry { index = index }];
        return vcpu.GetMsrs(e) == 1 ? e[0].data : 0;
    }
}

/// <summary>
/// One vCPU's fallback for KVM emulation failures: reads the registers, lets <see cref="Emulator"/> carry the
/// instruction out, and writes back the registers or injects the exception or interrupt it raised. Notices when
/// emulation makes no progress (<see cref="ProgressWatch"/>: the same emulation over and over with nothing in between)
/// so the VM stops with a report instead of spinning. Runs on the vCPU's own thread, only on the (rare) emulation-failure exit.
/// </summary>
public sealed class VcpuEmulator
{
    /// <summary>The same emulation this many times in a row with nothing in between (<see cref="ProgressWatch"/>): no progress.</summary>
    public const int NoProgressLimit = 64;

    private readonly Emulator _emulator = new();
    private readonly CpuState _cpu = new();
    private readonly EmulatedRam _ram;
    private readonly ProgressWatch _progress = new();

    public VcpuEmulator(GuestMemory memory) => _ram = new EmulatedRam(memory);

    /// <summary>Emulations whose registers KVM had already copied into kvm_run (no KVM_GET_REGS/SREGS).</summary>
    public long RegistersFromRunPage { get; private set; }

    /// <summary>Counts by kind and the total, for the exit log.</summary>
    public Emulator Emulator => _emulator;

    /// <summary>
    /// Handles one emulation failure. Returns the outcome; <see cref="EmulationStatus.Unsupported"/> (or a detected
    /// loop, reported through <paramref name="noProgress"/>) means the VM must stop with the crash report.
    /// <paramref name="exits"/>: the vCPU's exits so far, this one included. <paramref name="regsInRunPage"/>: KVM copied
    /// this exit's registers and segment registers into kvm_run (KVM_CAP_SYNC_REGS), so they need no ioctls. The
    /// results are still written with KVM_SET_REGS / KVM_SET_SREGS: a pause that comes before the next KVM_RUN reads
    /// the vCPU through ioctls and must see them.
    /// </summary>
    public EmulationOutcome Handle(KvmVcpu vcpu, ReadOnlySpan<byte> instruction, long exits, bool regsInRunPage, out string? noProgress)
    {
        noProgress = null;
        KvmRegs regs;
        KvmSregs sregs;
        if (regsInRunPage)
        {
            RegistersFromRunPage++;
            ref KvmSyncRegs synced = ref vcpu.RunView.SyncRegs;
            regs = synced.regs;
            sregs = synced.sregs;
        }
        else
        {
            regs = vcpu.GetRegs();
            sregs = vcpu.GetSregs();
        }
        KvmCpuState.Load(_cpu, regs, sregs);
        ulong rip = _cpu.Rip;
        EmulationOutcome outcome = _emulator.Step(_cpu, _ram, new KvmEmulationHost(vcpu), instruction);
        if (outcome.Status == EmulationStatus.Unsupported) return outcome;

        int repeats = _progress.Record(regs, outcome, exits);
        if (repeats >= NoProgressLimit)
        {
            noProgress = $"emulation makes no progress: {outcome.Mnemonic} at rip 0x{rip:x} gave {Describe(outcome)} {repeats} times in a row with nothing in between";
            return outcome;
        }

        KvmCpuState.Store(_cpu, ref regs, ref sregs);
        // KVM_SET_SREGS is not free (it resets KVM's MMU context): only when a segment or CR2 changed.
        bool segments = outcome.Status == EmulationStatus.Completed
            && outcome.Mnemonic is Iced.Intel.Mnemonic.Iretd or Iced.Intel.Mnemonic.Int or Iced.Intel.Mnemonic.Int3 or Iced.Intel.Mnemonic.Into;
        if (outcome.Status == EmulationStatus.Fault && outcome.Fault.FaultAddress is { } cr2)
        {
            sregs.cr2 = cr2;
            segments = true;
        }
        if (segments) vcpu.SetSregs(sregs);
        vcpu.SetRegs(regs);
        if (outcome.Status is EmulationStatus.Fault or EmulationStatus.SoftwareInterrupt)
        {
            KvmVcpuEvents events = vcpu.GetVcpuEvents();
            KvmCpuState.Inject(ref events, outcome);
            vcpu.SetVcpuEvents(events);
        }
        return outcome;
    }

    internal static string Describe(in EmulationOutcome o) => o.Status switch
    {
        EmulationStatus.Fault => $"exception {o.Fault.Vector}" + (o.Fault.ErrorCode is { } e ? $" (error code 0x{e:x})" : ""),
        EmulationStatus.SoftwareInterrupt => $"interrupt {o.Vector}",
        _ => o.Status.ToString().ToLowerInvariant(),
    };
}
