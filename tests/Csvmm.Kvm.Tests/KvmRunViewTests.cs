using System.Buffers.Binary;
using Csvmm.TestSupport;
using static Csvmm.TestSupport.KvmRunOffsets;

namespace Csvmm.Kvm.Tests;

/// <summary>
/// KvmRunView over a fake kvm_run page (a byte array) from <see cref="FakeKvmRun"/>, filled at the byte offsets
/// &lt;linux/kvm.h&gt; gives on x86-64 (<see cref="KvmRunOffsets"/>: literals; LayoutTests proves the C# structs against gcc).
/// </summary>
public sealed class KvmRunViewTests
{
    private const int PageSize = FakeKvmRun.PageSize;

    [Fact]
    public void HeaderFieldsReadTheirBytes()
    {
        byte[] page = new byte[PageSize];
        page[RequestInterruptWindow] = 1;
        page[ImmediateExit] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(ExitReason), (uint)KvmExitReason.Hlt);
        page[ReadyForInjection] = 1;
        page[IfFlag] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(Flags), 0x1234);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(Cr8), 0xF);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(ApicBase), 0xFEE0_0900);

        var view = new KvmRunView(page);

        Assert.Equal(KvmExitReason.Hlt, view.ExitReason);
        ref KvmRunHeader h = ref view.Header;
        Assert.Equal(1, h.request_interrupt_window);
        Assert.Equal(1, h.immediate_exit);
        Assert.Equal(1, h.ready_for_interrupt_injection);
        Assert.Equal(1, h.if_flag);
        Assert.Equal(0x1234, h.flags);
        Assert.Equal(0xFul, h.cr8);
        Assert.Equal(0xFEE0_0900ul, h.apic_base);

        h.immediate_exit = 0; // a view, not a copy: writes reach the page
        Assert.Equal(0, page[ImmediateExit]);
    }

    [Fact]
    public void IoExitExposesSizeTimesCountBytesAtDataOffset()
    {
        byte[] page = IoPage(direction: KvmRunIo.Out, size: 2, port: 0x3F8, count: 3, dataOffset: 0x400);
        for (int i = 0; i < 6; i++) page[0x400 + i] = (byte)(0xA0 + i);

        var view = new KvmRunView(page);

        Assert.Equal(KvmExitReason.Io, view.ExitReason);
        Assert.Equal(KvmRunIo.Out, view.Io.direction);
        Assert.Equal(2, view.Io.size);
        Assert.Equal(0x3F8, view.Io.port);
        Assert.Equal(3u, view.Io.count);
        Assert.Equal(0x400ul, view.Io.data_offset);
        Assert.Equal(new byte[] { 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5 }, view.IoData.ToArray());
    }

    [Fact]
    public void IoDataOfAnInExitWritesIntoThePage()
    {
        byte[] page = IoPage(direction: KvmRunIo.In, size: 4, port: 0xCFC, count: 1, dataOffset: 0x800);

        BinaryPrimitives.WriteUInt32LittleEndian(new KvmRunView(page).IoData, 0xDEAD_BEEF);

        Assert.Equal(0xDEAD_BEEFu, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(0x800)));
    }

    [Fact]
    public void IoDataEndingExactlyAtThePageEndIsAllowed()
    {
        byte[] page = IoPage(direction: KvmRunIo.Out, size: 4, port: 0x80, count: 2, dataOffset: PageSize - 8);
        Assert.Equal(8, new KvmRunView(page).IoData.Length);
    }

    [Theory]
    [InlineData((byte)1, 1u, (ulong)PageSize)] // starts at the end
    [InlineData((byte)4, 2u, (ulong)PageSize - 7)] // one byte past the end
    [InlineData((byte)1, 1u, (ulong)PageSize + 1)] // starts past the end
    [InlineData((byte)1, 1u, ulong.MaxValue)] // offset + length would wrap
    [InlineData((byte)4, uint.MaxValue, 0x400ul)] // size × count far beyond the page
    [InlineData((byte)255, uint.MaxValue, 0ul)]
    public void IoDataOutsideThePageIsEmpty(byte size, uint count, ulong dataOffset)
    {
        byte[] page = IoPage(direction: KvmRunIo.Out, size: size, port: 0x80, count: count, dataOffset: dataOffset);
        Assert.True(new KvmRunView(page).IoData.IsEmpty);
    }

    [Theory]
    [InlineData(1u, 1)]
    [InlineData(4u, 4)]
    [InlineData(8u, 8)]
    [InlineData(9u, 8)]
    [InlineData(uint.MaxValue, 8)]
    [InlineData(0u, 0)]
    public void MmioDataIsTheUnionsDataCappedAtEightBytes(uint len, int expectedLength)
    {
        byte[] page = FakeKvmRun.Mmio(0xFEC0_0010, len, isWrite: true, data: 0x1716_1514_1312_1110);

        var view = new KvmRunView(page);

        Assert.Equal(KvmExitReason.Mmio, view.ExitReason);
        Assert.Equal(0xFEC0_0010ul, view.Mmio.phys_addr);
        Assert.Equal(len, view.Mmio.len);
        Assert.Equal(1, view.Mmio.is_write);
        Assert.Equal(page.AsSpan(MmioData, expectedLength).ToArray(), view.MmioData.ToArray());
    }

    [Fact]
    public void MmioDataOfAReadWritesIntoThePage()
    {
        byte[] page = new byte[PageSize];
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(MmioLen), 2);

        new KvmRunView(page).MmioData.Fill(0x5A);

        Assert.Equal(new byte[] { 0x5A, 0x5A, 0 }, page.AsSpan(MmioData, 3).ToArray());
    }

    [Fact]
    public unsafe void InternalErrorFailEntryAndSystemEventReadTheUnion()
    {
        byte[] page = new byte[PageSize];
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(ExitUnion), 1);              // suberror / type
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(ExitUnion + 4), 2);          // ndata
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(ExitUnion + 8), 0x1122_3344);  // data[0] / cpu
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(ExitUnion + 16), 0x5566);      // data[1]

        var view = new KvmRunView(page);

        Assert.Equal(1u, view.Internal.suberror);
        Assert.Equal(2u, view.Internal.ndata);
        Assert.Equal(0x1122_3344ul, view.Internal.data[0]);
        Assert.Equal(0x5566ul, view.Internal.data[1]);
        Assert.Equal(KvmRunSystemEvent.Shutdown, view.SystemEvent.type);
        Assert.Equal(0x1122_3344ul, view.SystemEvent.data[0]);
        Assert.Equal(0x2_0000_0001ul, view.FailEntry.hardware_entry_failure_reason);
        Assert.Equal(0x1122_3344u, view.FailEntry.cpu);
    }

    [Fact]
    public void PageTooSmallForKvmRunIsRefused()
    {
        Assert.Throws<ArgumentException>(() => new KvmRunView(new byte[KvmRunLayout.KvmValidRegs + 15]));
        _ = new KvmRunView(new byte[KvmRunLayout.KvmValidRegs + 16]);
    }

    private static byte[] IoPage(byte direction, byte size, ushort port, uint count, ulong dataOffset) =>
        FakeKvmRun.Io(direction, size, port, count, dataOffset);
}
