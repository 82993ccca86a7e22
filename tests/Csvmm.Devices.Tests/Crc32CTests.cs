using Csvmm.Devices.State;

namespace Csvmm.Devices.Tests;

public sealed class Crc32CTests
{
    [Fact]
    public void Appending_in_pieces_gives_the_whole_buffers_crc()
    {
        var data = new byte[1000];
        new Random(5).NextBytes(data);
        uint whole = Crc32C.Compute(data);
        foreach (int cut in new[] { 0, 1, 7, 8, 9, 500, 999, 1000 })
            Assert.Equal(whole, Crc32C.Finish(Crc32C.Append(Crc32C.Append(Crc32C.Start, data.AsSpan(0, cut)), data.AsSpan(cut))));
        Assert.Equal(whole, DeviceStateRecord.Crc32C(data));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(4096)]
    [InlineData((1 << 20) + 3)]
    public void Appending_zeros_by_the_count_equals_appending_zero_bytes(int count)
    {
        foreach (uint running in new uint[] { Crc32C.Start, 0, 0x1234_5678, Crc32C.Append(Crc32C.Start, "csvmm"u8) })
        {
            Assert.Equal(Crc32C.Append(running, new byte[count]), Crc32C.AppendZeros(running, count));
            Assert.Equal(Crc32C.Append(running, new byte[count]), Crc32C.ApplyZeros(Crc32C.ZerosOperator(count), running));
        }
        Assert.Equal(0x8A9136AAu, Crc32C.Finish(Crc32C.AppendZeros(Crc32C.Start, 32))); // RFC 3720 B.4: 32 bytes of zeros
    }
}
