using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Csvmm.Kvm;

/// <summary>
/// A view of one vCPU's kvm_run page. Nothing is copied: the exit's fields and data spans point into the
/// page KVM shares with us. Tests build the same view over an ordinary byte array to feed fake exits.
/// </summary>
public readonly unsafe ref struct KvmRunView
{
    private readonly Span<byte> _page;

    public KvmRunView(Span<byte> page)
    {
        if (page.Length < KvmRunLayout.KvmValidRegs + 16)
            throw new ArgumentException("kvm_run page too small", nameof(page));
        _page = page;
    }

    public ref KvmRunHeader Header => ref MemoryMarshal.AsRef<KvmRunHeader>(_page);

    public KvmExitReason ExitReason => (KvmExitReason)Header.exit_reason;

    public ref KvmRunIo Io => ref MemoryMarshal.AsRef<KvmRunIo>(_page.Slice(KvmRunLayout.ExitUnion));
    public ref KvmRunMmio Mmio => ref MemoryMarshal.AsRef<KvmRunMmio>(_page.Slice(KvmRunLayout.ExitUnion));
    public ref KvmRunInternal Internal => ref MemoryMarshal.AsRef<KvmRunInternal>(_page.Slice(KvmRunLayout.ExitUnion));
    /// <summary>kvm_valid_regs: the <see cref="KvmSyncRegs"/> sets KVM copies into <see cref="SyncRegs"/> at each exit.</summary>
    public ref ulong ValidRegs => ref MemoryMarshal.AsRef<ulong>(_page.Slice(KvmRunLayout.KvmValidRegs));
    /// <summary>The registers KVM copied out at this exit (the sets <see cref="ValidRegs"/> named when KVM_RUN began).</summary>
    public ref KvmSyncRegs SyncRegs => ref MemoryMarshal.AsRef<KvmSyncRegs>(_page.Slice(KvmRunLayout.SyncRegs));
    public ref KvmRunEmulationFailure EmulationFailure => ref MemoryMarshal.AsRef<KvmRunEmulationFailure>(_page.Slice(KvmRunLayout.ExitUnion));
    public ref KvmRunFailEntry FailEntry => ref MemoryMarshal.AsRef<KvmRunFailEntry>(_page.Slice(KvmRunLayout.ExitUnion));
    public ref KvmRunSystemEvent SystemEvent => ref MemoryMarshal.AsRef<KvmRunSystemEvent>(_page.Slice(KvmRunLayout.ExitUnion));

    /// <summary>The data of a port-I/O exit: <c>size × count</c> bytes at <c>data_offset</c> inside the page. Empty if KVM's values don't fit.</summary>
    public Span<byte> IoData
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            ref KvmRunIo io = ref Io;
            ulong len = (ulong)io.size * io.count;
            ulong off = io.data_offset;
            if (off > (ulong)_page.Length || len > (ulong)_page.Length - off) return default;
            return _page.Slice((int)off, (int)len);
        }
    }

    /// <summary>The data of an MMIO exit (at most 8 bytes).</summary>
    public Span<byte> MmioData
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int len = (int)Math.Min(Mmio.len, 8u);
            return _page.Slice(KvmRunLayout.ExitUnion + 8, len);
        }
    }
}
