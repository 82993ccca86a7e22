using BenchmarkDotNet.Attributes;
using Csvmm.Devices;
using Csvmm.Devices.Legacy;
using Csvmm.Machine;

namespace Csvmm.Bench.Micro;

/// <summary>
/// The COM1 path a Linux serial console takes for every character (poll LSR until THRE, write THR), from a fake
/// port-I/O exit through <see cref="ExitDispatcher"/>, the port bus and <see cref="Serial16550"/> to the output
/// sink. The UART is set up the way the console leaves it while printing: IER = 0, MCR = DTR | RTS | OUT2.
/// Each benchmark must report 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class SerialBenchmarks
{
    private const ushort Com1 = 0x3F8;
    private const ushort Thr = 0, Mcr = 4, Lsr = 5;
    private const byte LsrThrEmpty = 0x20;

    private ExitDispatcher _dispatcher = null!;
    private Serial16550 _uart = null!;
    private CountingSink _sink = null!;
    private byte[] _thrWritePage = null!;
    private byte[] _lsrReadPage = null!;

    [GlobalSetup]
    public void Setup()
    {
        _sink = new CountingSink();
        _uart = new Serial16550(new CountingIrqLine(), _sink);
        _uart.Write(Mcr, [0x0B]);
        var pio = new PortIoBus();
        pio.Register(Com1, Serial16550.RegisterCount, _uart, "COM1");
        pio.Freeze();
        var mmio = new MmioBus();
        mmio.Freeze();
        _dispatcher = new ExitDispatcher(pio, mmio);
        _thrWritePage = FakeExit.PortIo(Com1 + Thr, 1, write: true, (byte)'x');
        _lsrReadPage = FakeExit.PortIo(Com1 + Lsr, 1, write: false, 0);

        if (ThrWrite() != ExitAction.Continue || _sink.Bytes != 1 || _sink.Last != (byte)'x')
            throw new InvalidOperationException("benchmark set-up: the THR write did not reach the output sink");
        if (LsrRead() != ExitAction.Continue || (_lsrReadPage[FakeExit.IoDataOffset] & LsrThrEmpty) == 0)
            throw new InvalidOperationException("benchmark set-up: the LSR read did not report THR empty");
    }

    /// <summary>OUT to COM1's THR: one transmitted character.</summary>
    [Benchmark]
    public ExitAction ThrWrite() => _dispatcher.Dispatch(new Csvmm.Kvm.KvmRunView(_thrWritePage));

    /// <summary>IN from COM1's LSR: the console's "transmitter ready?" poll.</summary>
    [Benchmark]
    public ExitAction LsrRead() => _dispatcher.Dispatch(new Csvmm.Kvm.KvmRunView(_lsrReadPage));

    /// <summary>The UART alone, without the dispatcher: a THR write straight into the device.</summary>
    [Benchmark]
    public void ThrWriteDeviceOnly() => _uart.Write(Thr, "y"u8);

    /// <summary>An output sink that keeps nothing: the cost of the UART, not of the host terminal.</summary>
    private sealed class CountingSink : ISerialOutput
    {
        public long Bytes;
        public byte Last;

        public void Write(byte value)
        {
            Bytes++;
            Last = value;
        }
    }

    /// <summary>An interrupt line that only counts level changes.</summary>
    private sealed class CountingIrqLine : IIrqLine
    {
        public long Changes;

        public void Set(bool level) => Changes++;
    }
}
