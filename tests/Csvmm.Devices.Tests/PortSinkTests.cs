using Csvmm.Devices.Legacy;

namespace Csvmm.Devices.Tests;

public sealed class PortSinkTests
{
    [Fact]
    public void ReadsReturnTheConstantAtEveryWidth()
    {
        var sink = new PortSink(0xFF);
        Assert.Equal(0xFF, sink.ReadByte(0));
        Assert.Equal(0xFFFFUL, sink.ReadValue(0, 2));
        Assert.Equal(0xFFFF_FFFFUL, sink.ReadValue(4, 4));
        Assert.Equal(3, sink.Reads);
        Assert.Equal(0x00, new PortSink(0x00).ReadByte(0));
    }

    [Fact]
    public void RemembersTheLastPostCode()
    {
        var post = new PortSink(0xFF);
        Assert.Null(post.LastWritten);
        post.WriteByte(0, 0x12);
        post.WriteByte(0, 0x34);
        Assert.Equal((byte)0x34, post.LastWritten);
        Assert.Equal(2, post.Writes);
        Assert.Equal(0xFF, post.ReadByte(0));
    }

    [Fact]
    public void AbsentUartLooksAbsentToLinux()
    {
        // serial8250's existence test: IER must read back 0 after writing 0.
        var com2 = new PortSink(0xFF);
        com2.WriteByte(1, 0x00);
        Assert.NotEqual(0, com2.ReadByte(1) & 0x0F);
    }

    [Fact]
    public void FirmwareDebugPortWritesToTheSink()
    {
        var output = new RecordingOutput();
        var port = new FirmwareDebugPort(output);
        foreach (byte b in "SeaBIOS\n"u8) port.WriteByte(0, b);
        port.WriteValue(0, 2, 0x4241);                             // only the low byte
        Assert.Equal("SeaBIOS\nA"u8.ToArray(), output.Bytes);
        Assert.Equal(9, port.BytesWritten);
        Assert.Equal(FirmwareDebugPort.ReadbackValue, port.ReadByte(0));
    }
}
