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
}
