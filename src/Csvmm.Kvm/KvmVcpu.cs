using Tmds.Linux;

namespace Csvmm.Kvm;

/// <summary>One KVM vCPU: its fd, its mapped kvm_run page, register access and KVM_RUN.</summary>
public sealed unsafe class KvmVcpu : IDisposable
{
    private readonly KvmVcpuHandle _handle;
    private readonly byte* _run;
    private readonly int _runSize;
    private bool _disposed;

    internal KvmVcpu(int id, KvmVcpuHandle handle, int mmapSize)
    {
        Id = id;
        _handle = handle;
        _runSize = mmapSize;
        void* p = LibC.mmap(null, (size_t)mmapSize, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, handle.RawFd, 0);
        if (p == LibC.MAP_FAILED)
        {
            int errno = LibC.errno;
            handle.Dispose();
            KvmException.ThrowErrno($"mmap of vCPU {id} kvm_run", errno);
        }
        _run = (byte*)p;
    }

    public int Id { get; }

    /// <summary>A view of this vCPU's kvm_run page (valid until Dispose).</summary>
    public KvmRunView RunView => new(new Span<byte>(_run, _runSize));

    /// <summary>kvm_run.immediate_exit: when set, KVM_RUN returns EINTR at once (used to stop a vCPU).</summary>
    public bool ImmediateExit
    {
        get => Volatile.Read(ref _run[1]) != 0;
        set => Volatile.Write(ref _run[1], value ? (byte)1 : (byte)0);
    }

    /// <summary>KVM_RUN. Returns 0 after a VM exit (read it from <see cref="RunView"/>), or -errno (-EINTR when kicked).</summary>
    public int Run() => Native.Ioctl(_handle, KvmIoctl.Run, null);

    public KvmRegs GetRegs() { KvmRegs r; Native.Check(_handle, KvmIoctl.GetRegs, &r, "KVM_GET_REGS"); return r; }
    public void SetRegs(in KvmRegs regs) { fixed (KvmRegs* p = &regs) Native.Check(_handle, KvmIoctl.SetRegs, p, "KVM_SET_REGS"); }
    public KvmSregs GetSregs() { KvmSregs r; Native.Check(_handle, KvmIoctl.GetSregs, &r, "KVM_GET_SREGS"); return r; }
    public void SetSregs(in KvmSregs sregs) { fixed (KvmSregs* p = &sregs) Native.Check(_handle, KvmIoctl.SetSregs, p, "KVM_SET_SREGS"); }
    public KvmFpu GetFpu() { KvmFpu r; Native.Check(_handle, KvmIoctl.GetFpu, &r, "KVM_GET_FPU"); return r; }
    public void SetFpu(in KvmFpu fpu) { fixed (KvmFpu* p = &fpu) Native.Check(_handle, KvmIoctl.SetFpu, p, "KVM_SET_FPU"); }
    public KvmLapicState GetLapic() { KvmLapicState r; Native.Check(_handle, KvmIoctl.GetLapic, &r, "KVM_GET_LAPIC"); return r; }
    public void SetLapic(in KvmLapicState s) { fixed (KvmLapicState* p = &s) Native.Check(_handle, KvmIoctl.SetLapic, p, "KVM_SET_LAPIC"); }
    public KvmVcpuEvents GetVcpuEvents() { KvmVcpuEvents r; Native.Check(_handle, KvmIoctl.GetVcpuEvents, &r, "KVM_GET_VCPU_EVENTS"); return r; }
    public void SetVcpuEvents(in KvmVcpuEvents e) { fixed (KvmVcpuEvents* p = &e) Native.Check(_handle, KvmIoctl.SetVcpuEvents, p, "KVM_SET_VCPU_EVENTS"); }

    public KvmXsave GetXsave() { KvmXsave r; Native.Check(_handle, KvmIoctl.GetXsave, &r, "KVM_GET_XSAVE"); return r; }
    public void SetXsave(in KvmXsave x) { fixed (KvmXsave* p = &x) Native.Check(_handle, KvmIoctl.SetXsave, p, "KVM_SET_XSAVE"); }
    public KvmXcrs GetXcrs() { KvmXcrs r; Native.Check(_handle, KvmIoctl.GetXcrs, &r, "KVM_GET_XCRS"); return r; }
    public void SetXcrs(in KvmXcrs x) { fixed (KvmXcrs* p = &x) Native.Check(_handle, KvmIoctl.SetXcrs, p, "KVM_SET_XCRS"); }
    public KvmDebugregs GetDebugregs() { KvmDebugregs r; Native.Check(_handle, KvmIoctl.GetDebugregs, &r, "KVM_GET_DEBUGREGS"); return r; }
    public void SetDebugregs(in KvmDebugregs d) { fixed (KvmDebugregs* p = &d) Native.Check(_handle, KvmIoctl.SetDebugregs, p, "KVM_SET_DEBUGREGS"); }

    public uint GetMpState() { KvmMpState s; Native.Check(_handle, KvmIoctl.GetMpState, &s, "KVM_GET_MP_STATE"); return s.mp_state; }
    public void SetMpState(uint state) { var s = new KvmMpState { mp_state = state }; Native.Check(_handle, KvmIoctl.SetMpState, &s, "KVM_SET_MP_STATE"); }

    /// <summary>KVM_SET_CPUID2 with the given entries.</summary>
    public void SetCpuid(ReadOnlySpan<KvmCpuidEntry2> entries)
    {
        byte[] buf = new byte[sizeof(KvmCpuid2) + entries.Length * sizeof(KvmCpuidEntry2)];
        fixed (byte* p = buf)
        {
            ((KvmCpuid2*)p)->nent = (uint)entries.Length;
            entries.CopyTo(new Span<KvmCpuidEntry2>(p + sizeof(KvmCpuid2), entries.Length));
            Native.Check(_handle, KvmIoctl.SetCpuid2, p, "KVM_SET_CPUID2");
        }
    }

    /// <summary>KVM_SET_MSRS; throws unless every entry was accepted.</summary>
    public void SetMsrs(ReadOnlySpan<KvmMsrEntry> entries)
    {
        byte[] buf = new byte[sizeof(KvmMsrs) + entries.Length * sizeof(KvmMsrEntry)];
        fixed (byte* p = buf)
        {
            ((KvmMsrs*)p)->nmsrs = (uint)entries.Length;
            entries.CopyTo(new Span<KvmMsrEntry>(p + sizeof(KvmMsrs), entries.Length));
            int n = Native.Check(_handle, KvmIoctl.SetMsrs, p, "KVM_SET_MSRS");
            if (n != entries.Length)
                throw new KvmException($"KVM_SET_MSRS: MSR 0x{entries[n].index:x} was refused");
        }
    }

    /// <summary>KVM_GET_MSRS: fills each entry's data; returns how many were read.</summary>
    public int GetMsrs(Span<KvmMsrEntry> entries)
    {
        byte[] buf = new byte[sizeof(KvmMsrs) + entries.Length * sizeof(KvmMsrEntry)];
        fixed (byte* p = buf)
        {
            ((KvmMsrs*)p)->nmsrs = (uint)entries.Length;
            entries.CopyTo(new Span<KvmMsrEntry>(p + sizeof(KvmMsrs), entries.Length));
            int n = Native.Check(_handle, KvmIoctl.GetMsrs, p, "KVM_GET_MSRS");
            new ReadOnlySpan<KvmMsrEntry>(p + sizeof(KvmMsrs), entries.Length).CopyTo(entries);
            return n;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        LibC.munmap(_run, (size_t)_runSize);
        _handle.Dispose();
    }
}
