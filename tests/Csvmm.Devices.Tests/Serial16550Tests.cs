using Csvmm.Devices.Legacy;

namespace Csvmm.Devices.Tests;

public sealed class Serial16550Tests
{
    private const ulong Data = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
    private const byte Out2 = 0x08, Loop = 0x10;

    private readonly FakeIrqLine _irq = new();
    private readonly RecordingOutput _out = new();
    private readonly Serial16550 _uart;

    public Serial16550Tests() => _uart = new Serial16550(_irq, _out);

    [Fact]
    public void PowerOnRegisters()
    {
        Assert.Equal(0x60, _uart.ReadByte(Lsr)); // THRE | TEMT, no data
        Assert.Equal(0x01, _uart.ReadByte(Iir)); // nothing pending, FIFOs off
        Assert.Equal(0x00, _uart.ReadByte(Ier));
        Assert.Equal(0x00, _uart.ReadByte(Lcr));
        Assert.Equal(0x00, _uart.ReadByte(Mcr));
        Assert.Equal(0xB0, _uart.ReadByte(Msr)); // CTS, DSR, DCD from the host side
        Assert.Empty(_irq.Calls);
    }

    [Fact]
    public void ThrBytesGoToTheSinkAndTheTransmitterStaysEmpty()
    {
        foreach (byte b in "hi\n"u8) _uart.WriteByte(Data, b);
        Assert.Equal("hi\n"u8.ToArray(), _out.Bytes);
        Assert.Equal(3, _uart.BytesOut);
        Assert.Equal(0x60, _uart.ReadByte(Lsr));
    }

    [Fact]
    public void IerKeepsOnlyItsFourBits()
    {
        _uart.WriteByte(Ier, 0xFF);
        Assert.Equal(0x0F, _uart.ReadByte(Ier));
        _uart.WriteByte(Ier, 0x00);
        Assert.Equal(0x00, _uart.ReadByte(Ier));
    }

    [Fact]
    public void DlabSwitchesOffsetsZeroAndOneToTheDivisorLatch()
    {
        _uart.WriteByte(Ier, 0x05);
        _uart.WriteByte(Lcr, 0x83);
        Assert.Equal(0x0C, _uart.ReadByte(Data)); // 9600 baud at power-on
        Assert.Equal(0x00, _uart.ReadByte(Ier));
        _uart.WriteByte(Data, 0x01);             // 115200 baud
        _uart.WriteByte(Ier, 0x02);
        Assert.Equal(0x01, _uart.ReadByte(Data));
        Assert.Equal(0x02, _uart.ReadByte(Ier));
        Assert.Empty(_out.Bytes);                 // a divisor write is not a transmit
        _uart.WriteByte(Lcr, 0x03);
        Assert.Equal(0x05, _uart.ReadByte(Ier));
        Assert.Equal(0x03, _uart.ReadByte(Lcr));
    }

    [Fact]
    public void ThrEmptyInterruptFollowsLinuxSemantics()
    {
        _uart.WriteByte(Mcr, Out2);
        _uart.WriteByte(Ier, 0x02);                // ETBEI 0→1 with THR empty: pending
        Assert.Equal(0x02, _uart.ReadByte(Iir));   // reported, and thereby acknowledged
        Assert.Equal(0x01, _uart.ReadByte(Iir));
        Assert.Equal([true, false], _irq.Calls);

        _uart.WriteByte(Data, (byte)'x');          // transmit completes at once: THRE pending again
        Assert.True(_irq.Level);
        Assert.Equal(0x02, _uart.ReadByte(Iir));
        Assert.False(_irq.Level);

        _uart.WriteByte(Ier, 0x02);                // already set: no re-arm
        Assert.Equal(0x01, _uart.ReadByte(Iir));
        _uart.WriteByte(Ier, 0x00);
        _uart.WriteByte(Ier, 0x02);                // 0→1 again: re-armed
        Assert.Equal(0x02, _uart.ReadByte(Iir));
        Assert.Equal([true, false, true, false, true, false], _irq.Calls);
    }

    [Fact]
    public void LinuxThreAndTxenProbesSeeAnInterrupt()
    {
        // serial8250_do_startup: UART_BUG_THRE test, then UART_BUG_TXEN test.
        _uart.WriteByte(Ier, 0x02);
        byte iir1 = _uart.ReadByte(Iir);
        _uart.WriteByte(Ier, 0x00);
        _uart.WriteByte(Ier, 0x02);
        byte iir2 = _uart.ReadByte(Iir);
        _uart.WriteByte(Ier, 0x00);
        Assert.Equal(0, iir1 & 0x01);
        Assert.Equal(0, iir2 & 0x01);

        _uart.WriteByte(Ier, 0x02);
        byte lsr = _uart.ReadByte(Lsr);
        byte iir = _uart.ReadByte(Iir);
        Assert.True((lsr & 0x40) != 0 && (iir & 0x01) == 0);
    }

    [Fact]
    public void Out2GatesTheInterruptLine()
    {
        _uart.WriteByte(Ier, 0x02);
        Assert.Equal(0x02, _uart.ReadByte(Iir));    // pending even without OUT2 (and acknowledged)
        _uart.WriteByte(Data, (byte)'a');           // pending again
        Assert.Empty(_irq.Calls);                   // but OUT2 is clear: the line never moved
        _uart.WriteByte(Mcr, Out2);
        Assert.Equal([true], _irq.Calls);
        _uart.WriteByte(Mcr, 0x00);
        Assert.Equal([true, false], _irq.Calls);
        _uart.WriteByte(Mcr, Out2 | Loop);          // loopback forces OUT2 inactive
        Assert.Equal([true, false], _irq.Calls);
        _uart.WriteByte(Mcr, Out2);
        Assert.Equal([true, false, true], _irq.Calls);
    }

    [Fact]
    public void ReceivedBytesRaiseDataReadyAndTheRxInterrupt()
    {
        _uart.WriteByte(Mcr, Out2);
        _uart.WriteByte(Ier, 0x01);
        Assert.Empty(_irq.Calls);
        Assert.Equal(2, _uart.EnqueueInput("ab"u8));
        Assert.Equal([true], _irq.Calls);
        Assert.Equal(0x61, _uart.ReadByte(Lsr));
        Assert.Equal(0x04, _uart.ReadByte(Iir));
        Assert.Equal((byte)'a', _uart.ReadByte(Data));
        Assert.True(_irq.Level);
        Assert.Equal((byte)'b', _uart.ReadByte(Data));
        Assert.Equal([true, false], _irq.Calls);
        Assert.Equal(0x60, _uart.ReadByte(Lsr));
        Assert.Equal(0x01, _uart.ReadByte(Iir));
        Assert.Equal(2, _uart.BytesIn);
    }

    [Fact]
    public void FifoControlEnablesFifosSetsTheTriggerAndClears()
    {
        _uart.WriteByte(Fcr, 0x01);
        Assert.Equal(0xC1, _uart.ReadByte(Iir));
        _uart.WriteByte(Fcr, 0x81);                 // trigger level 8
        _uart.WriteByte(Ier, 0x01);
        _uart.EnqueueInput("abc"u8);
        Assert.Equal(0xCC, _uart.ReadByte(Iir));   // below the trigger: character timeout
        _uart.EnqueueInput("defgh"u8);
        Assert.Equal(0xC4, _uart.ReadByte(Iir));   // at the trigger: data available
        _uart.WriteByte(Fcr, 0x83);                 // clear the receive FIFO
        Assert.Equal(0x60, _uart.ReadByte(Lsr));
        Assert.Equal(0xC1, _uart.ReadByte(Iir));
        Assert.Equal(8, _uart.BytesDiscarded);
        _uart.WriteByte(Fcr, 0x00);                 // FIFOs off
        Assert.Equal(0x01, _uart.ReadByte(Iir));
    }

    [Fact]
    public void FcrBit5DoesNotShowInIir()
    {
        // Linux's TI16750 test: a 16550A must not reflect the 64-byte FIFO bit.
        _uart.WriteByte(Fcr, 0x21);
        Assert.Equal(0xC0, _uart.ReadByte(Iir) & 0xE0);
        _uart.WriteByte(Lcr, 0xBF);
        _uart.WriteByte(Fcr, 0x21);
        Assert.Equal(0xC0, _uart.ReadByte(Iir) & 0xE0);
    }

    [Fact]
    public void LoopbackReflectsModemLinesAndReturnsTransmittedBytes()
    {
        _uart.WriteByte(Mcr, Loop | 0x0A);          // Linux's probe: LOOP | RTS | OUT2
        Assert.Equal(0x90, _uart.ReadByte(Msr) & 0xF0);
        _uart.WriteByte(Mcr, Loop | 0x05);          // DTR | OUT1
        Assert.Equal(0x60, _uart.ReadByte(Msr) & 0xF0);

        _uart.WriteByte(Data, 0x5A);
        Assert.Empty(_out.Bytes);
        Assert.Equal(0x61, _uart.ReadByte(Lsr));
        Assert.Equal(0x5A, _uart.ReadByte(Data));
        Assert.Equal(1, _uart.LoopbackBytes);
        Assert.Equal(0, _uart.EnqueueInput("x"u8)); // host input waits while the UART talks to itself

        _uart.WriteByte(Mcr, 0x00);
        Assert.Equal(0xB0, _uart.ReadByte(Msr) & 0xF0);
        Assert.Equal(1, _uart.EnqueueInput("x"u8));
    }

    [Fact]
    public void InterruptPrioritiesAreLineStatusRxThreModem()
    {
        _uart.WriteByte(Ier, 0x0F);
        _uart.WriteByte(Mcr, Loop);                 // entering loopback changes CTS/DSR/DCD: modem deltas
        _uart.WriteByte(Data, 1);
        _uart.WriteByte(Data, 2);                   // 1-byte receiver (FIFOs off): overrun
        Assert.Equal(1, _uart.Overruns);

        Assert.Equal(0x06, _uart.ReadByte(Iir));    // line status
        Assert.Equal(0x63, _uart.ReadByte(Lsr));    // OE | DR | THRE | TEMT; reading clears OE
        Assert.Equal(0x04, _uart.ReadByte(Iir));    // received data
        Assert.Equal(2, _uart.ReadByte(Data));      // a 16450 receiver keeps the newest byte
        Assert.Equal(0x02, _uart.ReadByte(Iir));    // THR empty (acknowledged by this read)
        Assert.Equal(0x00, _uart.ReadByte(Iir));    // modem status
        Assert.Equal(0x0B, _uart.ReadByte(Msr) & 0x0F); // DCTS | DDSR | DDCD
        Assert.Equal(0x01, _uart.ReadByte(Iir));
    }

    [Fact]
    public void InputQueueHolds64BytesAndRefusesTheRest()
    {
        var data = new byte[100];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)i;
        Assert.Equal(Serial16550.InputCapacity, _uart.EnqueueInput(data));
        Assert.Equal(0, _uart.EnqueueInput(data.AsSpan(64)));
        Assert.Equal(0, _uart.ReadByte(Data));
        Assert.Equal(1, _uart.EnqueueInput(data.AsSpan(64)));
        for (int i = 1; i <= 64; i++) Assert.Equal((byte)i, _uart.ReadByte(Data));
        Assert.Equal(0x60, _uart.ReadByte(Lsr));
        Assert.Equal(65, _uart.BytesIn);
    }

    [Fact]
    public void ScratchRegisterIsStored()
    {
        _uart.WriteByte(Scr, 0xA5);
        Assert.Equal(0xA5, _uart.ReadByte(Scr));
    }

    [Fact]
    public void LsrAndMsrWritesAreIgnored()
    {
        _uart.WriteByte(Lsr, 0x00);
        _uart.WriteByte(Msr, 0x00);
        Assert.Equal(0x60, _uart.ReadByte(Lsr));
        Assert.Equal(0xB0, _uart.ReadByte(Msr));
    }

    [Fact]
    public void InputFromAnotherThreadArrivesInOrder()
    {
        const int Total = 20_000;
        var producer = new Thread(() =>
        {
            var chunk = new byte[37];
            int sent = 0;
            while (sent < Total)
            {
                int n = Math.Min(chunk.Length, Total - sent);
                for (int i = 0; i < n; i++) chunk[i] = (byte)(sent + i);
                int took = _uart.EnqueueInput(chunk.AsSpan(0, n));
                sent += took;
                if (took == 0) Thread.Yield();
            }
        });
        producer.Start();
        int received = 0;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (received < Total && DateTime.UtcNow < deadline)
        {
            if ((_uart.ReadByte(Lsr) & 0x01) == 0) continue;
            Assert.Equal((byte)received, _uart.ReadByte(Data));
            received++;
        }
        producer.Join();
        Assert.Equal(Total, received);
        Assert.Equal(Total, _uart.BytesIn);
    }
}
