using System.Runtime.CompilerServices;
using Csvmm.Devices;
using Csvmm.Kvm;

namespace Csvmm.Machine;

/// <summary>What the vCPU loop does after an exit was dispatched.</summary>
public enum ExitAction
{
    /// <summary>Handled: enter the guest again.</summary>
    Continue,
    /// <summary>KVM_EXIT_SHUTDOWN: the guest triple-faulted (a PC resets; csvmm reports it).</summary>
    TripleFault,
    /// <summary>KVM_EXIT_INTERNAL_ERROR (e.g. emulation failure).</summary>
    InternalError,
    /// <summary>KVM_EXIT_FAIL_ENTRY: the guest state was refused by the hardware.</summary>
    FailEntry,
    /// <summary>KVM_EXIT_SYSTEM_EVENT reset.</summary>
    SystemReset,
    /// <summary>KVM_EXIT_SYSTEM_EVENT shutdown.</summary>
    SystemShutdown,
    /// <summary>KVM_EXIT_SYSTEM_EVENT crash (the guest reported a crash, e.g. through a paravirtual panic).</summary>
    GuestCrash,
    /// <summary>An exit csvmm does not know how to handle.</summary>
    Unhandled,
}

/// <summary>
/// Turns one KVM exit into bus accesses. A plain function over a <see cref="KvmRunView"/>, so tests can
/// drive it with fake exits built in a byte array. Allocates nothing; per-reason counters are plain
/// per-dispatcher (per-vCPU) arrays, so no vCPU ever writes a cache line another one reads.
/// </summary>
public sealed class ExitDispatcher
{
    private readonly PortIoBus _pio;
    private readonly MmioBus _mmio;
    private readonly long[] _counts = new long[64];

    public ExitDispatcher(PortIoBus pio, MmioBus mmio)
    {
        _pio = pio;
        _mmio = mmio;
    }

    /// <summary>Number of exits seen per KVM_EXIT_* reason (index = reason; 63 = anything larger).</summary>
    public ReadOnlySpan<long> Counts => _counts;

    public long Total
    {
        get { long t = 0; foreach (var c in _counts) t += c; return t; }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ExitAction Dispatch(KvmRunView run)
    {
        uint reason = (uint)run.ExitReason;
        _counts[reason < 63 ? reason : 63]++;
        switch (run.ExitReason)
        {
            case KvmExitReason.Io:
                return HandleIo(run);
            case KvmExitReason.Mmio:
                {
                    ref KvmRunMmio m = ref run.Mmio;
                    if (m.len is 0 or > 8) return ExitAction.Unhandled;
                    Span<byte> data = run.MmioData;
                    if (m.is_write != 0) _mmio.Write(m.phys_addr, data);
                    else _mmio.Read(m.phys_addr, data);
                    return ExitAction.Continue;
                }
            case KvmExitReason.Intr:
            case KvmExitReason.Hlt:              // only without an in-kernel LAPIC; re-entering waits again
            case KvmExitReason.IrqWindowOpen:
            case KvmExitReason.IoapicEoi:
                return ExitAction.Continue;
            case KvmExitReason.Shutdown:
                return ExitAction.TripleFault;
            case KvmExitReason.InternalError:
                return ExitAction.InternalError;
            case KvmExitReason.FailEntry:
                return ExitAction.FailEntry;
            case KvmExitReason.SystemEvent:
                return run.SystemEvent.type switch
                {
                    KvmRunSystemEvent.Reset => ExitAction.SystemReset,
                    KvmRunSystemEvent.Shutdown => ExitAction.SystemShutdown,
                    KvmRunSystemEvent.Crash => ExitAction.GuestCrash,
                    _ => ExitAction.Unhandled,
                };
            default:
                return ExitAction.Unhandled;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ExitAction HandleIo(KvmRunView run)
    {
        ref KvmRunIo io = ref run.Io;
        Span<byte> data = run.IoData;
        int size = io.size;
        if (size is not (1 or 2 or 4) || data.IsEmpty) return ExitAction.Unhandled;
        ushort port = io.port;
        if (io.direction > KvmRunIo.Out) return ExitAction.Unhandled;
        if (io.count == 1)
        {
            if (io.direction == KvmRunIo.Out) _pio.Write(port, data);
            else _pio.Read(port, data);
            return ExitAction.Continue;
        }
        // String I/O (rep ins/outs): KVM hands us count consecutive elements.
        for (int off = 0; off + size <= data.Length; off += size)
        {
            Span<byte> element = data.Slice(off, size);
            if (io.direction == KvmRunIo.Out) _pio.Write(port, element);
            else _pio.Read(port, element);
        }
        return ExitAction.Continue;
    }
}
