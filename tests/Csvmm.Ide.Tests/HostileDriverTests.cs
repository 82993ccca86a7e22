using Csvmm.Devices;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

/// <summary>
/// A hostile or broken driver: random widths and values on every IDE port (command and control blocks, the bus-master
/// registers with random PRD pointers and START bits) and on the PIIX configuration space, with commands that DMA into
/// and out of RAM that holds random PRD tables. Nothing may throw or hang; afterwards a hardware reset gives a drive
/// that answers IDENTIFY correctly.
/// </summary>
public sealed class HostileDriverTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomPortTrafficNeverBreaksTheController(int seed)
    {
        using var memory = new GuestMemory();
        memory.AddRegion(new GuestAddress(0), 0x40000, "ram");
        var random = new Random(seed);
        random.NextBytes(memory.GetSpan(new GuestAddress(0), 0x40000)); // random PRD tables wherever the pointer lands
        var disk = new FakeDisk(64);
        var channel = new IdeChannel(new RecordingIrq(), new IdeDrive(disk), new IdeDrive(new FakeDisk(8)), memory);
        var ide = new PiixIde(channel, null);
        IBusDevice[] devices = [channel.CommandBlock, channel.ControlBlock, ide.GetBarDevice(PiixIde.BusMasterBar)!];
        ulong[] spans = [8, 1, 16];
        int[] widths = [1, 2, 4, 3];
        byte[] commands = [0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0xC4, 0xC5, 0xC6, 0xC8, 0xCA, 0x25, 0x35, 0xE7, 0xEA, 0xEC, 0xEF, 0xF8, 0x27, 0x91, 0x10, 0x00, 0xFF];
        Span<byte> buf = stackalloc byte[4];
        for (int i = 0; i < 50_000; i++)
        {
            int which = random.Next(devices.Length);
            var data = buf[..widths[random.Next(widths.Length)]];
            ulong offset = (ulong)random.Next((int)spans[which] + 2);
            if (random.Next(3) == 0)
            {
                devices[which].Read(offset, data);
                continue;
            }
            random.NextBytes(data);
            if (which == 0 && offset == 7 && random.Next(2) == 0) data[0] = commands[random.Next(commands.Length)];
            if (random.Next(50) == 0) ide.WriteConfig(random.Next(0x100), data);
            else devices[which].Write(offset, data);
        }

        ide.Reset();
        Span<byte> status = stackalloc byte[1];
        channel.CommandBlock.Write(6, [0xA0]);      // master
        channel.CommandBlock.Write(7, [0xEC]);      // IDENTIFY DEVICE
        channel.CommandBlock.Read(7, status);
        Assert.Equal(AtaStatus.Drdy | AtaStatus.Dsc | AtaStatus.Drq, status[0] & ~0x80); // BSY never lingers here
        Span<byte> word = stackalloc byte[2];
        var identify = new ushort[256];
        for (int w = 0; w < 256; w++)
        {
            channel.CommandBlock.Read(0, word);
            identify[w] = (ushort)(word[0] | word[1] << 8);
        }
        Assert.Equal(64u, identify[60] | (uint)identify[61] << 16);   // LBA28 capacity: the 64-sector disk
    }
}
