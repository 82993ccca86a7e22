using Csvmm.Devices.Legacy;

namespace Csvmm.Devices.Tests;

public sealed class I8042Tests
{
    private readonly FakeVmControl _control = new();
    private readonly FakeIrqLine _kbdIrq = new();
    private readonly FakeIrqLine _auxIrq = new();
    private readonly I8042 _kbc;

    public I8042Tests() => _kbc = new I8042(_control, _kbdIrq, _auxIrq);

    private byte Status() => _kbc.CommandPort.ReadByte(0);
    private void Command(byte c) => _kbc.CommandPort.WriteByte(0, c);
    private void Data(byte d) => _kbc.DataPort.WriteByte(0, d);
    private byte ReadData() => _kbc.DataPort.ReadByte(0);

    /// <summary>Reads every byte the controller offers (as Linux's i8042_flush does).</summary>
    private List<byte> Drain()
    {
        var bytes = new List<byte>();
        while ((Status() & 0x01) != 0 && bytes.Count < 64) bytes.Add(ReadData());
        return bytes;
    }

    [Fact]
    public void StatusAtPowerOn()
    {
        Assert.Equal(0x14, Status()); // keyboard unlocked, system flag, empty buffers
        Command(0xAD);
        Assert.Equal(0x1C, Status()); // bit 3: last write went to the command port
        Data(0xF4);
        Assert.Equal(0x15, Status() & 0x1D); // a keyboard reply is waiting; bit 3 clear
    }

    [Fact]
    public void CommandByteReadAndWrite()
    {
        Command(0x20);
        Assert.Equal(0x1D, Status()); // output full, last write was a command
        Assert.Equal(I8042.DefaultCommandByte, ReadData());
        Command(0x60);
        Data(0x65);
        Assert.Equal(0x65, _kbc.CommandByte);
        Command(0x20);
        Assert.Equal(0x65, ReadData());
        Assert.Equal(0x1C, Status());
    }

    [Theory]
    [InlineData(0xAA, 0x55)] // controller self-test
    [InlineData(0xAB, 0x00)] // keyboard interface test
    [InlineData(0xA9, 0x00)] // mouse interface test
    public void SelfTests(byte command, byte reply)
    {
        Command(command);
        Assert.Equal([reply], Drain());
    }

    [Fact]
    public void DisableAndEnableInterfaces()
    {
        Command(0xAD);
        Command(0xA7);
        Assert.Equal(I8042.DefaultCommandByte | I8042.CtrKeyboardDisabled | I8042.CtrAuxDisabled, _kbc.CommandByte);
        Command(0xAE);
        Assert.Equal(I8042.DefaultCommandByte | I8042.CtrAuxDisabled, _kbc.CommandByte);
        Command(0xA8);
        Assert.Equal(I8042.DefaultCommandByte, _kbc.CommandByte);
    }

    [Fact]
    public void OutputPortReadAndA20Write()
    {
        Command(0xD0);
        Assert.Equal([0xCF], Drain());
        Command(0xD1);
        Data(0xDD);                       // A20 off, reset line high
        Assert.Equal(0xDD, _kbc.OutputPort);
        Assert.Empty(_control.Resets);
    }

    [Fact]
    public void OutputPortWriteWithResetBitClearRequestsReset()
    {
        Command(0xD1);
        Data(0xFE);
        Assert.Single(_control.Resets);
        Assert.Contains("output port", _control.Resets[0]);
    }

    [Fact]
    public void PulseCommandFeRequestsReset()
    {
        Command(0xFF);                    // pulses nothing
        Assert.Empty(_control.Resets);
        Command(0xFE);
        Assert.Single(_control.Resets);
        Assert.Contains("0xFE", _control.Resets[0]);
    }

    [Fact]
    public void WriteBuffersLoopBytesBackAsKeyboardOrMouseData()
    {
        Command(0xD2);
        Data(0x12);
        Assert.Equal(0x01, Status() & 0x21);
        Assert.Equal(0x12, ReadData());

        Command(0xD3);                    // Linux's AUX loop test
        Data(0x5A);
        Assert.Equal(0x21, Status() & 0x21);
        Assert.Equal(0x5A, ReadData());
        Assert.Equal([true, false], _auxIrq.Calls); // IRQ 12: the AUX IRQ delivery test
        Assert.Equal([true, false], _kbdIrq.Calls);
    }

    [Fact]
    public void KeyboardResetAnswersAckThenSelfTestPassed()
    {
        Data(0xFF);
        Assert.Equal([0xFA, 0xAA], Drain());
        // One edge per byte on IRQ 1.
        Assert.Equal([true, false, true, false], _kbdIrq.Calls);
    }

    [Fact]
    public void KeyboardIdentifyDependsOnTranslation()
    {
        Data(0xF2);
        Assert.Equal([0xFA, 0xAB, 0x83], Drain());
        Command(0x60);
        Data(I8042.DefaultCommandByte | I8042.CtrTranslate);
        Data(0xF2);
        Assert.Equal([0xFA, 0xAB, 0x41], Drain());
    }

    [Fact]
    public void KeyboardCommandsWithArguments()
    {
        Data(0xED);
        Data(0x05);
        Assert.Equal([0xFA, 0xFA], Drain());
        Assert.Equal(0x05, _kbc.KeyboardLeds);

        Data(0xF0);
        Data(0x00);                       // query the scan code set
        Assert.Equal([0xFA, 0xFA, 0x02], Drain());
        Data(0xF3);
        Data(0x20);
        Data(0xF4);
        Data(0xF5);
        Assert.Equal([0xFA, 0xFA, 0xFA, 0xFA], Drain());
        Data(0xEE);
        Assert.Equal([0xEE], Drain());
        Data(0x42);                       // not a keyboard command
        Assert.Equal([0xFE], Drain());
        Assert.Equal(1, _kbc.UnknownCommands);
    }

    [Fact]
    public void DisabledKeyboardHoldsItsBytesAndWritingToItReEnables()
    {
        Data(0xFF);                       // FA is loaded, AA waits in the keyboard
        Command(0xAD);
        Assert.Equal(0xFA, ReadData());
        Assert.Equal(0, Status() & 0x01);
        Command(0xAE);
        Assert.Equal([0xAA], Drain());

        Command(0xAD);
        Data(0xF4);                       // sending to the keyboard clears the disable bit
        Assert.Equal(0, _kbc.CommandByte & I8042.CtrKeyboardDisabled);
        Assert.Equal([0xFA], Drain());
    }

    [Fact]
    public void InterruptFollowsTheCommandByteEnable()
    {
        Command(0x60);
        Data(0x04);                       // no interrupts
        Data(0xF4);
        Assert.Empty(_kbdIrq.Calls);
        Command(0x60);
        Data(0x05);                       // the pending byte now interrupts
        Assert.Equal([true], _kbdIrq.Calls);
        Assert.Equal(0xFA, ReadData());
        Assert.Equal([true, false], _kbdIrq.Calls);
    }

    [Fact]
    public void MouseCommandsThroughD4()
    {
        Command(0xD4);
        Data(0xFF);
        Assert.Equal([0xFA, 0xAA, 0x00], Drain());
        Command(0xD4);
        Data(0xF2);
        Assert.Equal([0xFA, 0x00], Drain());
        Command(0xD4);
        Data(0xF3);
        Command(0xD4);
        Data(0x50);
        Command(0xD4);
        Data(0xE9);
        Assert.Equal([0xFA, 0xFA, 0xFA, 0x00, 0x02, 0x50], Drain());
        Assert.Empty(_kbdIrq.Calls);
        // An edge per mouse byte: 11 bytes, each raised when loaded and lowered when read.
        Assert.Equal(22, _auxIrq.Calls.Count);
        for (int i = 0; i < _auxIrq.Calls.Count; i++) Assert.Equal(i % 2 == 0, _auxIrq.Calls[i]);
    }
}
