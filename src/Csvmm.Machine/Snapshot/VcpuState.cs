using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Csvmm.Devices.State;
using Csvmm.Kvm;

namespace Csvmm.Machine.Snapshot;

/// <summary>
/// Everything KVM keeps of one vCPU that a snapshot must carry: general and segment registers, the XSAVE area and
/// XCRs, debug registers, the local APIC, pending events, the multiprocessing state and the MSRs in
/// <see cref="X86.Msr.Saved"/> that the host reads back. Captured from a stopped vCPU, applied in QEMU's order
/// (registers, XSAVE, XCRs, sregs, MP state, LAPIC, events, MSRs, debug registers) after CPUID is set.
/// </summary>
/// <remarks>
/// Encoding, version 1: u16 version, then each structure as u32 length + its bytes (the length must be the size this
/// csvmm's struct has, proven against &lt;linux/kvm.h&gt; by the layout test), u32 MP state, u32 MSR count (at most
/// <see cref="MaxMsrs"/>) and that many (u32 index, u64 value). Nothing else; trailing bytes are refused.
/// </remarks>
public sealed class VcpuState
{
    public const ushort Version = 1;
    public const int MaxMsrs = 256;

    public KvmRegs Regs;
    public KvmSregs Sregs;
    public KvmXsave Xsave;
    public KvmXcrs Xcrs;
    public KvmDebugregs Debugregs;
    public KvmLapicState Lapic;
    public KvmVcpuEvents Events;
    public uint MpState;
    public KvmMsrEntry[] Msrs = [];

    /// <summary>Reads the state of a vCPU that is not running (paused or never started).</summary>
    public static VcpuState Capture(KvmVcpu vcpu, IReadOnlyList<uint> msrIndexes)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        var s = new VcpuState
        {
            Regs = vcpu.GetRegs(), Sregs = vcpu.GetSregs(), Xsave = vcpu.GetXsave(), Xcrs = vcpu.GetXcrs(),
            Debugregs = vcpu.GetDebugregs(), Lapic = vcpu.GetLapic(), Events = vcpu.GetVcpuEvents(), MpState = vcpu.GetMpState(),
        };
        var msrs = new List<KvmMsrEntry>(msrIndexes.Count);
        Span<KvmMsrEntry> one = stackalloc KvmMsrEntry[1];
        foreach (uint index in msrIndexes)
        {
            one[0] = new KvmMsrEntry { index = index };
            if (vcpu.GetMsrs(one) == 1) msrs.Add(one[0]); // an MSR this KVM does not have is simply not carried
        }
        s.Msrs = [.. msrs];
        return s;
    }

    /// <summary>Puts the state into a vCPU (its CPUID already set).</summary>
    public void Apply(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.SetRegs(Regs);
        vcpu.SetXsave(Xsave);
        if (Xcrs.nr_xcrs > 0) vcpu.SetXcrs(Xcrs);
        vcpu.SetSregs(Sregs);
        vcpu.SetMpState(MpState);
        vcpu.SetLapic(Lapic);
        vcpu.SetVcpuEvents(Events);
        if (Msrs.Length > 0) vcpu.SetMsrs(Msrs);
        vcpu.SetDebugregs(Debugregs);
    }

    public byte[] Encode()
    {
        var w = new StateWriter();
        w.U16(Version);
        w.Bytes(Bytes(ref Regs));
        w.Bytes(Bytes(ref Sregs));
        w.Bytes(Bytes(ref Xsave));
        w.Bytes(Bytes(ref Xcrs));
        w.Bytes(Bytes(ref Debugregs));
        w.Bytes(Bytes(ref Lapic));
        w.Bytes(Bytes(ref Events));
        w.U32(MpState);
        w.U32((uint)Msrs.Length);
        foreach (var m in Msrs) { w.U32(m.index); w.U64(m.data); }
        return w.Written.ToArray();
    }

    private static ReadOnlySpan<byte> Bytes<T>(ref T value) where T : unmanaged =>
        MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref value, 1));

    private static T Struct<T>(ref StateReader r, string name) where T : unmanaged
    {
        int size = Marshal.SizeOf<T>();
        var bytes = r.Bytes(size);
        r.Check(bytes.Length == size, $"{name} is {bytes.Length} bytes, not {size}");
        return MemoryMarshal.Read<T>(bytes);
    }

    /// <exception cref="SnapshotException">Truncated, another version, a structure of the wrong size, an impossible value, or trailing bytes.</exception>
    public static VcpuState Decode(ReadOnlySpan<byte> data, int vcpu)
    {
        try
        {
            var r = new StateReader(data, $"vCPU {vcpu}");
            ushort version = r.U16();
            r.Check(version == Version, $"version {version}, this csvmm reads version {Version}");
            var s = new VcpuState
            {
                Regs = Struct<KvmRegs>(ref r, "kvm_regs"),
                Sregs = Struct<KvmSregs>(ref r, "kvm_sregs"),
                Xsave = Struct<KvmXsave>(ref r, "kvm_xsave"),
                Xcrs = Struct<KvmXcrs>(ref r, "kvm_xcrs"),
                Debugregs = Struct<KvmDebugregs>(ref r, "kvm_debugregs"),
                Lapic = Struct<KvmLapicState>(ref r, "kvm_lapic_state"),
                Events = Struct<KvmVcpuEvents>(ref r, "kvm_vcpu_events"),
            };
            r.Check(s.Xcrs.nr_xcrs <= KvmXcrs.MaxXcrs, $"{s.Xcrs.nr_xcrs} XCRs (at most {KvmXcrs.MaxXcrs})");
            s.MpState = r.U32();
            r.Check(s.MpState <= KvmMpState.SipiReceived, $"MP state {s.MpState} does not exist");
            uint count = r.U32();
            r.Check(count <= MaxMsrs, $"{count} MSRs (at most {MaxMsrs})");
            var msrs = new KvmMsrEntry[count];
            var seen = new HashSet<uint>();
            for (int i = 0; i < count; i++)
            {
                msrs[i].index = r.U32();
                msrs[i].data = r.U64();
                r.Check(seen.Add(msrs[i].index), $"MSR 0x{msrs[i].index:x} appears twice");
            }
            r.End();
            s.Msrs = msrs;
            return s;
        }
        catch (DeviceStateException e)
        {
            throw new SnapshotException(e.Message);
        }
    }
}
