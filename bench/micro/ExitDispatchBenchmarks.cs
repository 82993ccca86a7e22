using BenchmarkDotNet.Attributes;
using Csvmm.Devices;
using Csvmm.Kvm;
using Csvmm.Machine;

namespace Csvmm.Bench.Micro;

/// <summary>
/// <see cref="ExitDispatcher.Dispatch"/> on fake exits: everything csvmm does between two KVM_RUN calls except the
/// ioctl itself. Each benchmark must report 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class ExitDispatchBenchmarks
{
    private const ushort PostCodePort = 0x80;
    private const ulong DeviceMmio = 0xFEB0_0000;       // a device's MMIO window
    private const ulong UnclaimedMmio = 0xD000_0000;    // the PCI hole address the VMM benchmark's guest writes

    private ExitDispatcher _dispatcher = null!;
    private byte[] _outPage = null!;
    private byte[] _inPage = null!;
    private byte[] _mmioPage = null!;
    private byte[] _unclaimedMmioPage = null!;

    [GlobalSetup]
    public void Setup()
    {
        var port80 = new NullDevice();
        var pio = new PortIoBus();
        pio.Register(PostCodePort, 1, port80, "POST code (null device)");
        pio.Freeze();
        var mmioDevice = new NullDevice();
        var mmio = new MmioBus();
        mmio.Register(DeviceMmio, 0x1000, mmioDevice, "null MMIO device");
        mmio.Freeze();
        _dispatcher = new ExitDispatcher(pio, mmio);
        _outPage = FakeExit.PortIo(PostCodePort, 1, write: true, 0x5A);
        _inPage = FakeExit.PortIo(PostCodePort, 1, write: false, 0);
        _mmioPage = FakeExit.Mmio(DeviceMmio + 0x10, 4, write: true, 0x1234_5678);
        _unclaimedMmioPage = FakeExit.Mmio(UnclaimedMmio, 4, write: true, 0x1234_5678);

        // Each fake exit must reach what it claims to measure, or the numbers mean nothing.
        Expect(PortOut() == ExitAction.Continue && port80.Accesses == 1, "OUT 0x80 did not reach the port device");
        Expect(PortIn() == ExitAction.Continue && port80.Accesses == 2 && _inPage[FakeExit.IoDataOffset] == 0xFF,
            "IN 0x80 did not read the port device");
        Expect(MmioWriteToDevice() == ExitAction.Continue && mmioDevice.Accesses == 1, "the MMIO write did not reach the device");
        Expect(MmioWriteUnclaimed() == ExitAction.Continue && mmio.UnhandledAccesses == 1 && mmioDevice.Accesses == 1,
            "the unclaimed MMIO write was not counted as unhandled");
    }

    private static void Expect(bool condition, string problem)
    {
        if (!condition) throw new InvalidOperationException($"benchmark set-up: {problem}");
    }

    /// <summary>OUT to port 0x80 (a device that does nothing): the VMM benchmark's PIO exit.</summary>
    [Benchmark]
    public ExitAction PortOut() => _dispatcher.Dispatch(new KvmRunView(_outPage));

    /// <summary>IN from port 0x80.</summary>
    [Benchmark]
    public ExitAction PortIn() => _dispatcher.Dispatch(new KvmRunView(_inPage));

    /// <summary>32-bit MMIO write to a registered device.</summary>
    [Benchmark]
    public ExitAction MmioWriteToDevice() => _dispatcher.Dispatch(new KvmRunView(_mmioPage));

    /// <summary>32-bit MMIO write to an address no device claims: the VMM benchmark's MMIO exit.</summary>
    [Benchmark]
    public ExitAction MmioWriteUnclaimed() => _dispatcher.Dispatch(new KvmRunView(_unclaimedMmioPage));
}
