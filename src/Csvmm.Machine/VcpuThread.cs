using Csvmm.Emulation;
using Csvmm.Kvm;
using Csvmm.Machine.Emulation;
using Csvmm.Memory;
using System.Runtime.InteropServices;
using Csvmm.Sys;

namespace Csvmm.Machine;

/// <summary>
/// One vCPU's host thread and its run loop. The loop allocates nothing per exit: KVM_RUN, a view over the
/// mapped kvm_run page, a dispatch into the frozen buses. Anything that ends the VM goes to <see cref="RunControl"/>,
/// which the main thread waits on; the main thread stops the others with immediate_exit + a signal kick.
/// </summary>
public sealed class VcpuThread
{
    private const int EINTR = 4, EAGAIN = 11;
    private readonly KvmVcpu _vcpu;
    private readonly ExitDispatcher _dispatcher;
    private readonly RunControl _control;
    private readonly GuestMemory _memory;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new(false);
    private readonly KickTarget _kick = VcpuKick.NewTarget();
    private readonly VcpuEmulator _emulation;
    private readonly PauseControl _pause;

    /// <summary>Exits after the last emulation failure for which KVM keeps copying the registers out (KVM_CAP_SYNC_REGS).</summary>
    internal const int SyncRegsWindow = 256;

    private readonly bool _syncRegs;
    private int _syncWindow;

    /// <param name="syncRegs">KVM supports KVM_CAP_SYNC_REGS for registers and segment registers: during a burst of
    /// emulation failures KVM copies them into kvm_run at each exit, saving two ioctls per emulated instruction.</param>
    public VcpuThread(KvmVcpu vcpu, ExitDispatcher dispatcher, RunControl control, GuestMemory memory, PauseControl? pause = null, bool syncRegs = false)
    {
        _syncRegs = syncRegs;
        _pause = pause ?? new PauseControl();
        _vcpu = vcpu;
        _dispatcher = dispatcher;
        _control = control;
        _memory = memory;
        _emulation = new VcpuEmulator(memory);
        _thread = new Thread(Loop, 256 * 1024) { Name = $"vcpu{vcpu.Id}", IsBackground = true };
    }

    public KvmVcpu Vcpu => _vcpu;

    /// <summary>The host thread id (gettid) of this vCPU's thread, 0 before it started.</summary>
    public long ThreadId => Volatile.Read(ref _tid);
    private long _tid;

    /// <summary>The instructions this vCPU had emulated in userspace (counts by kind).</summary>
    public Emulator Emulator => _emulation.Emulator;
    public ExitDispatcher Dispatcher => _dispatcher;
    /// <summary>Emulations that read the registers from kvm_run (KVM_CAP_SYNC_REGS) instead of through ioctls.</summary>
    public long EmulationsWithSyncedRegisters => _emulation.RegistersFromRunPage;

    public void Start()
    {
        _thread.Start();
        _started.Wait();
    }

    /// <summary>Makes KVM_RUN return now (or at its next entry) so the loop sees the finished <see cref="RunControl"/>.</summary>
    public void Kick()
    {
        _vcpu.ImmediateExit = true;
        _kick.Kick(); // nothing to signal once the thread has left its loop

    }

    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    private void Loop()
    {
        _kick.Enter();
        Volatile.Write(ref _tid, Csvmm.Sys.ThreadSignals.CurrentThreadId());
        _pause.Enter();
        _started.Set();
        try
        {
            // From here on this thread runs what the guest drives: confine it (seccomp, when csvmm installed it).
            Csvmm.Sys.ThreadConfinement.Enter(Csvmm.Sys.ThreadRole.Vcpu);
            while (!_control.IsFinished)
            {
                if (_pause.Requested)
                {
                    _pause.Park(() => _control.IsFinished);
                    _vcpu.ImmediateExit = false; // the loop re-checks IsFinished: a stop's kick after this sets it again
                    continue;
                }
                int r = _vcpu.Run();
                if (r < 0)
                {
                    if (r == -EINTR || r == -EAGAIN)
                    {
                        // A pause's kick (or a stale one): clear it before the checks at the top, so a kick that
                        // comes after them still stops the next KVM_RUN.
                        _vcpu.ImmediateExit = false;
                        continue;
                    }
                    _control.Finish(new VmOutcome(VmExitKind.KvmError, $"KVM_RUN on vCPU {_vcpu.Id} failed (errno {-r})"));
                    break;
                }
                ExitAction action = _dispatcher.Dispatch(_vcpu.RunView);
                if (_syncWindow != 0 && --_syncWindow == 0) _vcpu.RunView.ValidRegs = 0; // the burst is over: exits stay lean
                if (action == ExitAction.Continue) continue;
                if (action == ExitAction.InternalError && TryEmulate()) continue;
                HandleTerminal(action);
                break;
            }
        }
        catch (Exception e)
        {
            // A device or KVM failure on this thread must end the VM cleanly, never the process.
            _control.Finish(new VmOutcome(VmExitKind.KvmError, $"vCPU {_vcpu.Id}: {e.Message}"));
        }
        finally
        {
            _pause.Leave();
            _kick.Leave();
        }
    }

    private string? _emulationFailure;

    /// <summary>
    /// KVM could not emulate an instruction (suberror 1): carry it out in userspace (<see cref="VcpuEmulator"/>). True to
    /// resume the vCPU; false to stop with the crash report (an instruction csvmm does not emulate, or no progress).
    /// </summary>
    private bool TryEmulate()
    {
        ref KvmRunInternal ie = ref _vcpu.RunView.Internal;
        if (ie.suberror != 1) return false;
        var run = _vcpu.RunView;
        bool inRunPage = (run.ValidRegs & (KvmSyncRegs.Regs | KvmSyncRegs.Sregs)) == (KvmSyncRegs.Regs | KvmSyncRegs.Sregs);
        EmulationOutcome outcome = _emulation.Handle(_vcpu, InstructionBytes(ref run.EmulationFailure), _dispatcher.Total, inRunPage, out string? noProgress);
        if (_syncRegs)
        {
            // Emulation failures come in bursts (a loop around an instruction KVM cannot run): have KVM copy the
            // registers out at the next exits, until SyncRegsWindow exits pass without one.
            run.ValidRegs = KvmSyncRegs.Regs | KvmSyncRegs.Sregs;
            _syncWindow = SyncRegsWindow;
        }
        if (noProgress is not null)
        {
            _emulationFailure = noProgress;
            return false;
        }
        if (outcome.Status != EmulationStatus.Unsupported) return true;
        _emulationFailure = outcome.Reason;
        return false;
    }

    private void HandleTerminal(ExitAction action)
    {
        switch (action)
        {
            case ExitAction.SystemReset:
                _control.RequestReset("KVM system event: reset");
                return;
            case ExitAction.SystemShutdown:
                _control.RequestPowerOff("KVM system event: shutdown");
                return;
        }
        if (_control.IsFinished) return;
        var run = _vcpu.RunView;
        string headline;
        ReadOnlySpan<byte> insn = default;
        switch (action)
        {
            case ExitAction.TripleFault:
                headline = "guest triple fault (KVM_EXIT_SHUTDOWN)";
                break;
            case ExitAction.InternalError:
                {
                    ref KvmRunInternal ie = ref run.Internal;
                    headline = $"KVM internal error, suberror {ie.suberror} ({SuberrorName(ie.suberror)})";
                    if (_emulationFailure is { } why) headline += $"; csvmm did not emulate it: {why}";
                    ReadOnlySpan<byte> reported = InstructionBytes(ref run.EmulationFailure);
                    if (!reported.IsEmpty) insn = reported.ToArray();
                    break;
                }
            case ExitAction.GuestCrash:
                headline = "guest crash reported through a KVM system event";
                break;
            case ExitAction.FailEntry:
                headline = $"KVM entry failure, hardware reason 0x{run.FailEntry.hardware_entry_failure_reason:x}";
                break;
            default:
                headline = $"unhandled KVM exit {(uint)run.ExitReason} ({run.ExitReason})";
                if (run.ExitReason == Kvm.KvmExitReason.Io)
                    headline += $" port 0x{run.Io.port:x} size {run.Io.size}";
                break;
        }
        string report;
        try
        {
            var regs = _vcpu.GetRegs();
            var sregs = _vcpu.GetSregs();
            report = CrashReport.Build(headline, _vcpu.Id, regs, sregs, _memory, insn);
        }
        catch (Exception e)
        {
            report = $"csvmm: {headline} on vCPU {_vcpu.Id} (registers unavailable: {e.Message})";
        }
        _control.Finish(new VmOutcome(VmExitKind.Crashed, headline, report));
    }

    private static string SuberrorName(uint s) => s switch
    {
        1 => "emulation failure",
        2 => "simultaneous exceptions",
        3 => "event delivery failure",
        4 => "unexpected exit reason",
        _ => "unknown",
    };

    /// <summary>
    /// The instruction bytes of an emulation failure (kvm_run.emulation_failure with
    /// KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES: insn_size, then insn_bytes[15]), as a view of the run page;
    /// empty when KVM gave none.
    /// </summary>
    internal static unsafe ReadOnlySpan<byte> InstructionBytes(ref KvmRunEmulationFailure ef)
    {
        // ndata counts the u64 words after suberror/ndata: flags, then the 16 bytes of insn_size + insn_bytes.
        if (ef.suberror != KvmRunEmulationFailure.SuberrorEmulation || ef.ndata < 3) return default;
        if ((ef.flags & KvmRunEmulationFailure.FlagInstructionBytes) == 0) return default;
        int len = Math.Min((int)ef.insn_size, KvmRunEmulationFailure.MaxInstructionBytes);
        return MemoryMarshal.CreateReadOnlySpan(ref ef.insn_bytes[0], len);
    }
}
