using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Virtio.Tests;

/// <summary>
/// A hostile or broken driver hammering every register: random widths, offsets and values on the BAR (common config,
/// ISR, device config, notify, MSI-X table and PBA, and past them) and on the PCI configuration space. Nothing may
/// throw, hang or touch the disk; afterwards a reset and a proper initialisation give a working device.
/// </summary>
public sealed class HostileDriverTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomRegisterTrafficNeverBreaksTheDevice(int seed)
    {
        using var rig = new BlkRig(1 << 20);
        var random = new Random(seed);
        int[] widths = [1, 2, 4, 8, 3];
        Span<byte> buf = stackalloc byte[8];
        for (int i = 0; i < 20_000; i++)
        {
            int width = widths[random.Next(widths.Length)];
            ulong offset = random.Next(4) == 0 ? (ulong)random.Next(0x9000) : (ulong)random.Next(0x40) + (ulong)(random.Next(6) * 0x1000);
            var data = buf[..Math.Min(width, 8)];
            switch (random.Next(4))
            {
                case 0:
                    rig.Bar.Read(offset, data);
                    break;
                case 1:
                    random.NextBytes(data);
                    rig.Bar.Write(offset, data);
                    break;
                case 2:
                    random.NextBytes(data);
                    rig.Pci.WriteConfig(random.Next(0x100), data[..Math.Min(width, 4)]);
                    break;
                default:
                    rig.Pci.ReadConfig(random.Next(0x110), data[..Math.Min(width, 4)]);
                    break;
            }
        }

        Assert.Equal(rig.Initial, rig.FileContents);   // no request was ever valid: the disk is untouched

        rig.Status = 0;                                // reset, then a well-behaved driver
        Assert.Equal(0, rig.Status);
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        var (status, data2, _) = rig.ReadSectors(3, 4, 2);
        Assert.Equal(StatusOk, status);
        Assert.Equal(rig.Initial.AsSpan(3 * 512, 4 * 512).ToArray(), data2);
    }
}
