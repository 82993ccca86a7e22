using System.Buffers.Binary;
using Csvmm.Devices;
using Csvmm.Kvm;
using Csvmm.TestSupport;

namespace Csvmm.Machine.Tests;

/// <summary>
/// <see cref="ExitDispatcher"/> driven by fake exits: a kvm_run page in a byte array, filled at the byte offsets
/// &lt;linux/kvm.h&gt; gives on x86-64 (as KVM itself fills it), with recording devices on real buses.
/// </summary>
public sealed class ExitDispatcherTests
{
    // Three pages, as KVM_GET_VCPU_MMAP_SIZE reports; KVM puts port-I/O data in the second (KVM_PIO_PAGE_OFFSET = 1).
    private const int RunSize = FakeKvmRun.VcpuMmapSize;
    private const int PioDataOffset = FakeKvmRun.PioDataOffset;

    private const ushort PortBase = 0x100;
    private const ulong MmioBase = 0xD000_0000;

    private readonly AccessLog _log = new();
    private readonly PortIoBus _pio = new();
    private readonly MmioBus _mmio = new();
    private readonly ExitDispatcher _dispatcher;
    private byte _next = 0x40;

    public ExitDispatcherTests()
    {
        _pio.Register(PortBase, 8, new RecordingDevice("pio", _log, (offset, size) => offset switch
        {
            7 => _next++,                                  // a byte stream for string input
            _ => 0x8877_6655_4433_2211UL >> (int)(8 * offset),
        }), "recording ports");
        _mmio.Register(MmioBase, 0x1000, new RecordingDevice("mmio", _log, (offset, _) => 0xF0E0_D0C0_B0A0_9080UL + offset), "recording MMIO");
        _pio.Freeze();
        _mmio.Freeze();
        _dispatcher = new ExitDispatcher(_pio, _mmio);
    }

    private static byte[] Exit(KvmExitReason reason) => FakeKvmRun.Exit(reason, RunSize);

    private static byte[] IoExit(byte direction, byte size, ushort port, uint count, ulong dataOffset = PioDataOffset) =>
        FakeKvmRun.Io(direction, size, port, count, dataOffset, RunSize);

    private static byte[] MmioExit(ulong address, int length, bool isWrite, ulong value = 0) =>
        FakeKvmRun.Mmio(address, (uint)length, isWrite, value, RunSize);

    private ExitAction Dispatch(byte[] page) => _dispatcher.Dispatch(new KvmRunView(page));

    private static ulong Mask(int size) => size == 8 ? ulong.MaxValue : (1UL << (8 * size)) - 1;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void OutOfEachSizeReachesTheDeviceAtItsOffset(int size)
    {
        byte[] page = IoExit(KvmRunIo.Out, (byte)size, PortBase + 3, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(PioDataOffset), 0xDDCC_BBAA);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        Assert.Equal([Access.W("pio", 3, size, 0xDDCC_BBAA & Mask(size))], _log.Snapshot());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void InOfEachSizeFillsTheDataAreaFromTheDevice(int size)
    {
        byte[] page = IoExit(KvmRunIo.In, (byte)size, PortBase + 1, 1);
        page.AsSpan(PioDataOffset, 8).Fill(0xEE);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        ulong expected = 0x0088_7766_5544_3322UL & Mask(size);
        Assert.Equal([Access.R("pio", 1, size, expected)], _log.Snapshot());
        Assert.Equal(expected, BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(PioDataOffset)) & Mask(size));
        Assert.Equal(0xEE, page[PioDataOffset + size]); // nothing beyond the access is touched
    }

    [Fact]
    public void StringOutDeliversEveryElementInOrder()
    {
        byte[] page = IoExit(KvmRunIo.Out, 2, PortBase, 3);
        byte[] data = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
        data.CopyTo(page, PioDataOffset);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        Assert.Equal([Access.W("pio", 0, 2, 0x0201), Access.W("pio", 0, 2, 0x0403), Access.W("pio", 0, 2, 0x0605)], _log.Snapshot());
    }

    [Fact]
    public void StringInFillsEveryElementInOrder()
    {
        byte[] page = IoExit(KvmRunIo.In, 1, PortBase + 7, 5);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        Assert.Equal(new byte[] { 0x40, 0x41, 0x42, 0x43, 0x44 }, page.AsSpan(PioDataOffset, 5).ToArray());
        Assert.Equal(5, _log.Snapshot().Length);
        Assert.Equal(0, page[PioDataOffset + 5]);
    }

    [Theory]
    [InlineData(1, 0xFFUL)]
    [InlineData(2, 0xFFFFUL)]
    [InlineData(4, 0xFFFF_FFFFUL)]
    public void ReadOfAPortWithoutADeviceReturnsAllOnes(int size, ulong expected)
    {
        byte[] page = IoExit(KvmRunIo.In, (byte)size, 0x9000, 1);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        Assert.Equal(expected, BusData.Get(page.AsSpan(PioDataOffset, size)));
        Assert.Equal(0, page[PioDataOffset + size]);
        Assert.Equal(1, _pio.UnhandledAccesses);
        Assert.Empty(_log.Snapshot());
    }

    [Fact]
    public void WriteToAPortWithoutADeviceIsDroppedAndCounted()
    {
        Assert.Equal(ExitAction.Continue, Dispatch(IoExit(KvmRunIo.Out, 1, 0x9000, 1)));

        Assert.Equal(1, _pio.UnhandledAccesses);
        Assert.Empty(_log.Snapshot());
    }

    [Theory]
    [InlineData(0, 1u)]
    [InlineData(3, 1u)]
    [InlineData(8, 1u)]
    [InlineData(1, 0u)]
    public void ImpossibleSizeOrCountIsUnhandledAndReachesNoDevice(byte size, uint count)
    {
        Assert.Equal(ExitAction.Unhandled, Dispatch(IoExit(KvmRunIo.Out, size, PortBase, count)));
        Assert.Equal(ExitAction.Unhandled, Dispatch(IoExit(KvmRunIo.In, size, PortBase, count)));

        Assert.Empty(_log.Snapshot());
    }

    [Theory]
    [InlineData(RunSize - 1UL)]
    [InlineData(RunSize + 4096UL)]
    [InlineData(ulong.MaxValue)]
    public void DataOutsideTheRunPageIsUnhandled(ulong dataOffset)
    {
        Assert.Equal(ExitAction.Unhandled, Dispatch(IoExit(KvmRunIo.In, 4, PortBase, 1, dataOffset)));
        Assert.Equal(ExitAction.Unhandled, Dispatch(IoExit(KvmRunIo.Out, 1, PortBase, 2, dataOffset)));

        Assert.Empty(_log.Snapshot());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void MmioWriteOfEachSizeReachesTheDevice(int size)
    {
        byte[] page = MmioExit(MmioBase + 0x10, size, isWrite: true, 0x1122_3344_5566_7788);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        Assert.Equal([Access.W("mmio", 0x10, size, 0x1122_3344_5566_7788 & Mask(size))], _log.Snapshot());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void MmioReadOfEachSizeFillsTheExitData(int size)
    {
        byte[] page = MmioExit(MmioBase + 0x20, size, isWrite: false);

        Assert.Equal(ExitAction.Continue, Dispatch(page));

        ulong expected = (0xF0E0_D0C0_B0A0_9080UL + 0x20) & Mask(size);
        Assert.Equal([Access.R("mmio", 0x20, size, expected)], _log.Snapshot());
        Assert.Equal(expected, BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(KvmRunOffsets.MmioData)));
    }

    [Fact]
    public void MmioOutsideAnyDeviceReadsAllOnesAndDropsWrites()
    {
        byte[] read = MmioExit(0xE000_0000, 4, isWrite: false);
        Assert.Equal(ExitAction.Continue, Dispatch(read));
        Assert.Equal(ExitAction.Continue, Dispatch(MmioExit(0xE000_0000, 4, isWrite: true, 7)));

        Assert.Equal(0xFFFF_FFFFUL, BinaryPrimitives.ReadUInt64LittleEndian(read.AsSpan(KvmRunOffsets.MmioData)));
        Assert.Equal(2, _mmio.UnhandledAccesses);
        Assert.Empty(_log.Snapshot());
    }

    [Fact]
    public void MmioLengthZeroOrAboveEightIsUnhandledAndReachesNoDevice()
    {
        Assert.Equal(ExitAction.Unhandled, Dispatch(MmioExit(MmioBase, 4096, isWrite: true, 0x0102_0304_0506_0708)));
        Assert.Equal(ExitAction.Unhandled, Dispatch(MmioExit(MmioBase, 0, isWrite: false)));
        Assert.Empty(_log.Snapshot());
    }

    [Theory]
    [InlineData(KvmExitReason.Shutdown, ExitAction.TripleFault)]
    [InlineData(KvmExitReason.InternalError, ExitAction.InternalError)]
    [InlineData(KvmExitReason.FailEntry, ExitAction.FailEntry)]
    [InlineData(KvmExitReason.Hlt, ExitAction.Continue)]
    [InlineData(KvmExitReason.Intr, ExitAction.Continue)]
    [InlineData(KvmExitReason.IrqWindowOpen, ExitAction.Continue)]
    [InlineData(KvmExitReason.IoapicEoi, ExitAction.Continue)]
    [InlineData(KvmExitReason.Unknown, ExitAction.Unhandled)]
    [InlineData(KvmExitReason.Exception, ExitAction.Unhandled)]
    [InlineData(KvmExitReason.Hypercall, ExitAction.Unhandled)]
    [InlineData(KvmExitReason.X86Rdmsr, ExitAction.Unhandled)]
    [InlineData((KvmExitReason)1000, ExitAction.Unhandled)]
    public void NonIoExitsMapToTheirAction(KvmExitReason reason, ExitAction expected)
    {
        Assert.Equal(expected, Dispatch(Exit(reason)));
        Assert.Empty(_log.Snapshot());
    }

    [Theory]
    [InlineData(KvmRunSystemEvent.Reset, ExitAction.SystemReset)]
    [InlineData(KvmRunSystemEvent.Shutdown, ExitAction.SystemShutdown)]
    [InlineData(KvmRunSystemEvent.Crash, ExitAction.GuestCrash)]
    [InlineData(99u, ExitAction.Unhandled)]
    public void SystemEventsMapToResetOrShutdown(uint type, ExitAction expected)
    {
        Assert.Equal(expected, Dispatch(FakeKvmRun.SystemEvent(type, RunSize)));
    }

    [Fact]
    public void EveryExitIsCountedUnderItsReason()
    {
        Dispatch(IoExit(KvmRunIo.Out, 1, PortBase, 1));
        Dispatch(IoExit(KvmRunIo.In, 3, PortBase, 1));                  // counted even when unhandled
        Dispatch(IoExit(KvmRunIo.In, 1, PortBase, 4));
        Dispatch(MmioExit(MmioBase, 4, isWrite: true));
        Dispatch(Exit(KvmExitReason.Hlt));
        Dispatch(Exit(KvmExitReason.Shutdown));
        Dispatch(Exit((KvmExitReason)63));
        Dispatch(Exit((KvmExitReason)1000));

        ReadOnlySpan<long> counts = _dispatcher.Counts;
        Assert.Equal(64, counts.Length);
        Assert.Equal(3, counts[(int)KvmExitReason.Io]);
        Assert.Equal(1, counts[(int)KvmExitReason.Mmio]);
        Assert.Equal(1, counts[(int)KvmExitReason.Hlt]);
        Assert.Equal(1, counts[(int)KvmExitReason.Shutdown]);
        Assert.Equal(2, counts[63]);                                    // 63 and everything above it
        Assert.Equal(8, _dispatcher.Total);
    }
}
