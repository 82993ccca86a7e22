using System.Buffers.Binary;
using Csvmm.Kvm;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Tests;

/// <summary>A vCPU's snapshot encoding (no KVM needed: the state is filled by hand).</summary>
public sealed unsafe class VcpuStateTests
{
    private static VcpuState Sample()
    {
        var s = new VcpuState
        {
            Regs = new KvmRegs { rax = 1, rip = 0xFFF0, rflags = 2, rsp = 0x7C00 },
            MpState = KvmMpState.Halted,
            Msrs = [new() { index = 0x10, data = 123456789 }, new() { index = 0xC000_0082, data = 0xFFFF_FFFF_8100_0000 }],
        };
        s.Sregs.cs.selector = 0xF000;
        s.Sregs.cr0 = 0x6000_0010;
        s.Xsave.region[0] = 0x37F;
        s.Xcrs.nr_xcrs = 1;
        s.Xcrs.xcrs[2] = 7;
        s.Debugregs.dr7 = 0x400;
        s.Lapic.regs[0x30] = 0x14;
        s.Events.exception_nr = 14;
        return s;
    }

    [Fact]
    public void Round_trip_keeps_every_structure()
    {
        var a = Sample();
        var b = VcpuState.Decode(a.Encode(), 0);
        Assert.Equal(a.Regs.rip, b.Regs.rip);
        Assert.Equal(a.Regs.rsp, b.Regs.rsp);
        Assert.Equal(0xF000, b.Sregs.cs.selector);
        Assert.Equal(0x6000_0010ul, b.Sregs.cr0);
        Assert.Equal(0x37Fu, b.Xsave.region[0]);
        Assert.Equal((0u, 7ul), b.Xcrs.Get(0));
        Assert.Equal(0x400ul, b.Debugregs.dr7);
        Assert.Equal(0x14, b.Lapic.regs[0x30]);
        Assert.Equal(14, b.Events.exception_nr);
        Assert.Equal(KvmMpState.Halted, b.MpState);
        Assert.Equal(a.Msrs, b.Msrs);
        Assert.Equal(a.Encode(), b.Encode());
    }

    [Fact]
    public void Every_truncation_and_trailing_byte_is_refused()
    {
        var good = Sample().Encode();
        foreach (int cut in new[] { 0, 1, 2, 5, 100, good.Length / 2, good.Length - 13, good.Length - 1 })
            Assert.Throws<SnapshotException>(() => VcpuState.Decode(good.AsSpan(0, cut), 1));
        var e = Assert.Throws<SnapshotException>(() => VcpuState.Decode([.. good, 0], 1));
        Assert.Contains("vCPU 1", e.Message);
    }

    [Fact]
    public void Wrong_sizes_versions_and_impossible_values_are_refused()
    {
        var good = Sample().Encode();
        var v2 = (byte[])good.Clone();
        v2[0] = 2;
        Assert.Contains("version 2", Assert.Throws<SnapshotException>(() => VcpuState.Decode(v2, 0)).Message);

        var regsSize = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(regsSize.AsSpan(2), (uint)sizeof(KvmRegs) - 8);
        Assert.Throws<SnapshotException>(() => VcpuState.Decode(regsSize, 0));

        var hugeBlock = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(hugeBlock.AsSpan(2), uint.MaxValue);
        Assert.Throws<SnapshotException>(() => VcpuState.Decode(hugeBlock, 0));

        var s = Sample();
        s.MpState = 9;
        Assert.Contains("MP state 9", Assert.Throws<SnapshotException>(() => VcpuState.Decode(s.Encode(), 0)).Message);
        s = Sample();
        s.Xcrs.nr_xcrs = 17;
        Assert.Contains("17 XCRs", Assert.Throws<SnapshotException>(() => VcpuState.Decode(s.Encode(), 0)).Message);
        s = Sample();
        s.Msrs = [new() { index = 0x10 }, new() { index = 0x10 }];
        Assert.Contains("twice", Assert.Throws<SnapshotException>(() => VcpuState.Decode(s.Encode(), 0)).Message);

        var manyMsrs = Sample().Encode();
        int countAt = manyMsrs.Length - 2 * 12 - 4;
        BinaryPrimitives.WriteUInt32LittleEndian(manyMsrs.AsSpan(countAt), 100_000);
        Assert.Contains("100000 MSRs", Assert.Throws<SnapshotException>(() => VcpuState.Decode(manyMsrs, 0)).Message);
    }
}
