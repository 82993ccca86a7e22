using System.Buffers.Binary;
using System.Text;
using Csvmm.Block;

namespace Csvmm.Ide.Tests;

public class AtaProtocolTests
{
    private const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;

    private static string AtaString(byte[] id, int word, int length)
    {
        var chars = new char[length];
        for (int i = 0; i < length; i++) chars[i] = (char)id[word * 2 + (i ^ 1)];
        return new string(chars).TrimEnd();
    }

    private static ushort Word(byte[] id, int w) => BinaryPrimitives.ReadUInt16LittleEndian(id.AsSpan(w * 2));

    private static byte[] Identify(Harness h)
    {
        h.Out(6, 0xA0);
        h.Command(AtaCommand.IdentifyDevice);
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.False(h.Irq.Level);
        byte[] id = h.ReadBlock(512);
        Assert.Equal(Ready, h.Status());
        return id;
    }

    [Fact]
    public void Identify_small_disk_reports_geometry_capacity_and_swapped_strings()
    {
        var h = new Harness(new FakeDisk(16 * 63 * 20 + 5));
        byte[] id = Identify(h);
        Assert.Equal("CSVMM HARDDISK", AtaString(id, 27, 40));
        Assert.Equal("SERIAL-M", AtaString(id, 10, 20));
        Assert.Equal("1.0", AtaString(id, 23, 8));
        Assert.Equal((byte)'C', id[27 * 2 + 1]);
        Assert.Equal((byte)'S', id[27 * 2]); // first character in the high byte
        Assert.Equal(20, Word(id, 1));
        Assert.Equal(16, Word(id, 3));
        Assert.Equal(63, Word(id, 6));
        Assert.Equal(16 * 63 * 20 + 5, Word(id, 60) | (Word(id, 61) << 16));
        Assert.Equal(16 * 63 * 20 + 5, Word(id, 100) | (Word(id, 101) << 16));
        Assert.Equal(0x8010, Word(id, 47));
        Assert.Equal(0, Word(id, 59));
        Assert.NotEqual(0, Word(id, 49) & 0x0200);
        Assert.Equal(0x2400, Word(id, 83) & 0x2400);
        Assert.Equal(0x2400, Word(id, 86) & 0x2400);
        byte sum = 0;
        foreach (byte b in id) sum += b;
        Assert.Equal(0, sum);
        Assert.Equal(0xA5, id[510]);
    }

    [Fact]
    public void Identify_large_disk_caps_lba28_and_cylinders_and_reports_lba48()
    {
        ulong sectors = (1UL << 32) + 12345;
        var h = new Harness(FakeDisk.Sparse(sectors));
        byte[] id = Identify(h);
        Assert.Equal(0x0FFFFFFFu, (uint)(Word(id, 60) | (Word(id, 61) << 16)));
        ulong lba48 = Word(id, 100) | ((ulong)Word(id, 101) << 16) | ((ulong)Word(id, 102) << 32) | ((ulong)Word(id, 103) << 48);
        Assert.Equal(sectors, lba48);
        Assert.Equal(16383, Word(id, 1));
    }

    [Fact]
    public void Pio_read_single_and_multi_sector_with_interrupt_per_sector()
    {
        var disk = new FakeDisk(64);
        var h = new Harness(disk);
        h.Lba28(5, 3);
        h.Command(AtaCommand.ReadSectors);
        for (int s = 0; s < 3; s++)
        {
            Assert.True(h.Irq.Level);
            Assert.Equal(Ready | AtaStatus.Drq, h.Status());
            Assert.Equal(disk.Data.AsSpan((5 + s) * 512, 512).ToArray(), h.ReadBlock(512));
        }
        Assert.Equal(3, h.Irq.Raises);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(0, h.InData()); // no data outside DRQ
    }

    [Fact]
    public void Pio_write_multi_sector_lands_on_disk()
    {
        var disk = new FakeDisk(64);
        var h = new Harness(disk);
        byte[] payload = Enumerable.Range(0, 1024).Select(i => (byte)(i ^ 0x5A)).ToArray();
        h.Lba28(10, 2);
        h.Command(AtaCommand.WriteSectors);
        Assert.False(h.Irq.Level); // PIO out: no interrupt before the first block
        Assert.Equal(Ready | AtaStatus.Drq, h.AltStatus());
        h.WriteBlock(payload.AsSpan(0, 512));
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        h.WriteBlock(payload.AsSpan(512));
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(payload, disk.Data.AsSpan(10 * 512, 1024).ToArray());
    }

    [Fact]
    public void Multiple_mode_moves_blocks_of_the_set_size()
    {
        var disk = new FakeDisk(64);
        var h = new Harness(disk);
        h.Out(6, 0xA0);
        h.Command(AtaCommand.ReadMultiple); // not enabled yet
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Abrt, h.In(1));

        h.Out(2, 3); // not a power of two
        h.Command(AtaCommand.SetMultipleMode);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        h.Out(2, 32); // too big
        h.Command(AtaCommand.SetMultipleMode);
        Assert.Equal(AtaError.Abrt, h.In(1));
        h.Out(2, 4);
        h.Command(AtaCommand.SetMultipleMode);
        Assert.Equal(Ready, h.Status());

        int raisesBefore = h.Irq.Raises;
        h.Lba28(0, 6);
        h.Command(AtaCommand.ReadMultiple);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.Equal(disk.Data.AsSpan(0, 2048).ToArray(), h.ReadBlock(2048));
        Assert.True(h.Irq.Level); // the second block is ready: one interrupt per block
        Assert.Equal(raisesBefore + 2, h.Irq.Raises);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.Equal(disk.Data.AsSpan(2048, 1024).ToArray(), h.ReadBlock(1024)); // short last block
        Assert.Equal(Ready, h.Status());

        byte[] payload = Enumerable.Range(0, 5 * 512).Select(i => (byte)(i * 3)).ToArray();
        h.Lba48(20, 5);
        h.Command(AtaCommand.WriteMultipleExt);
        h.WriteBlock(payload.AsSpan(0, 2048));
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        h.WriteBlock(payload.AsSpan(2048));
        Assert.Equal(Ready, h.Status());
        Assert.Equal(2, disk.Writes);
        Assert.Equal(payload, disk.Data.AsSpan(20 * 512, 5 * 512).ToArray());
        Assert.Equal(0x0104, BinaryPrimitives.ReadUInt16LittleEndian(Identify(h).AsSpan(59 * 2)));
    }

    [Fact]
    public void Lba48_reaches_sectors_around_the_lba28_boundary()
    {
        var disk = FakeDisk.Sparse((1UL << 28) + 8);
        var h = new Harness(disk);
        foreach (ulong lba in new[] { (1UL << 28) - 1, 1UL << 28 })
        {
            byte[] payload = Enumerable.Repeat((byte)(lba & 0xFF ^ 0x33), 512).ToArray();
            h.Lba48(lba, 1);
            h.Command(AtaCommand.WriteSectorsExt);
            h.WriteBlock(payload);
            Assert.Equal(Ready, h.Status());
            h.Lba48(lba, 1);
            h.Command(AtaCommand.ReadSectorsExt);
            Assert.Equal(Ready | AtaStatus.Drq, h.Status());
            Assert.Equal(payload, h.ReadBlock(512));
        }
        // LBA28 cannot address 2^28: the same registers wrap to sector 0 of the 28-bit space.
        h.Lba28(0x0FFFFFFF, 1);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.Equal(Enumerable.Repeat((byte)(0xFF ^ 0x33), 512).ToArray(), h.ReadBlock(512));
    }

    [Fact]
    public void Lba48_count_zero_means_65536_and_past_the_end_is_idnf()
    {
        var h = new Harness(new FakeDisk(1000));
        h.Lba48(0, 0);
        h.Command(AtaCommand.ReadSectorsExt);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Idnf, h.In(1));
        Assert.Equal(0, h.InData());
    }

    [Fact]
    public void Lba28_count_zero_means_256()
    {
        var h = new Harness(new FakeDisk(300));
        h.Lba28(45, 0);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(AtaError.Idnf, h.In(1)); // 45 + 256 > 300
        h.Lba28(40, 0);
        h.Command(AtaCommand.ReadSectors);
        for (int i = 0; i < 256; i++) { Assert.Equal(Ready | AtaStatus.Drq, h.Status()); h.ReadBlock(512); }
        Assert.Equal(Ready, h.Status());
    }

    [Fact]
    public void Reads_and_writes_past_the_end_transfer_nothing()
    {
        var disk = new FakeDisk(16);
        var h = new Harness(disk);
        h.Lba28(15, 2);
        h.Command(AtaCommand.ReadSectors);
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Idnf, h.In(1));
        h.Lba28(16, 1);
        h.Command(AtaCommand.WriteSectors);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        h.WriteBlock(new byte[512]);
        Assert.Equal(0, disk.Writes);
    }

    [Fact]
    public void Chs_addressing_translates_with_16_heads_63_sectors()
    {
        var disk = new FakeDisk(16 * 63 * 3);
        var h = new Harness(disk);
        // cylinder 1, head 2, sector 5 → (1*16 + 2)*63 + 4
        h.Out(6, 0xA2);
        h.Out(2, 1);
        h.Out(3, 5);
        h.Out(4, 1);
        h.Out(5, 0);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.Equal(disk.Data.AsSpan(((1 * 16 + 2) * 63 + 4) * 512, 512).ToArray(), h.ReadBlock(512));

        h.Out(3, 0); // sector 0 does not exist in CHS
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(AtaError.Idnf, h.In(1));

        // INITIALIZE DEVICE PARAMETERS: 4 heads, 17 sectors per track.
        h.Out(6, 0xA3);
        h.Out(2, 17);
        h.Command(AtaCommand.InitializeDeviceParameters);
        Assert.Equal(Ready, h.Status());
        h.Out(6, 0xA1);
        h.Out(2, 1);
        h.Out(3, 2);
        h.Out(4, 2);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(disk.Data.AsSpan(((2 * 4 + 1) * 17 + 1) * 512, 512).ToArray(), h.ReadBlock(512));
    }

    [Theory]
    [InlineData(0x00)]
    [InlineData(0xA1)]
    [InlineData(0xC8)]
    [InlineData(0xFF)]
    public void Unknown_commands_abort(byte command)
    {
        var h = new Harness(new FakeDisk(8));
        h.Command(command);
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Abrt, h.In(1));
    }

    [Fact]
    public void Simple_commands_complete()
    {
        var disk = new FakeDisk(100);
        var h = new Harness(disk);
        foreach (byte c in new byte[] { 0xE0, 0xE1, 0xE2, 0xE3, 0x10, 0x1F, 0xE7, 0xEA })
        {
            h.Command(c);
            Assert.Equal(Ready, h.Status());
        }
        Assert.Equal(2, disk.Flushes);

        h.Out(2, 0);
        h.Command(AtaCommand.CheckPowerMode);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(0xFF, h.In(2));

        h.Out(1, 0x02); h.Command(AtaCommand.SetFeatures); Assert.Equal(Ready, h.Status());
        h.Out(1, 0x03); h.Out(2, 0x0C); h.Command(AtaCommand.SetFeatures); Assert.Equal(Ready, h.Status());
        h.Out(1, 0x03); h.Out(2, 0x45); h.Command(AtaCommand.SetFeatures); Assert.Equal(AtaError.Abrt, h.In(1));
        h.Out(1, 0x55); h.Command(AtaCommand.SetFeatures); Assert.Equal(Ready | AtaStatus.Err, h.Status());
    }

    [Fact]
    public void Read_native_max_address_in_lba28_and_lba48()
    {
        var h = new Harness(FakeDisk.Sparse(0x1_2345_6789));
        h.Out(6, 0x40);
        h.Command(AtaCommand.ReadNativeMaxAddress);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(0xFF, h.In(3));
        Assert.Equal(0xFF, h.In(4));
        Assert.Equal(0xFF, h.In(5));
        Assert.Equal(0x0F, h.In(6) & 0x0F);

        h.Command(AtaCommand.ReadNativeMaxAddressExt);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(0x88, h.In(3));
        Assert.Equal(0x67, h.In(4));
        Assert.Equal(0x45, h.In(5));
        h.Control(AtaControl.Hob);
        Assert.Equal(0x23, h.In(3));
        Assert.Equal(0x01, h.In(4));
        Assert.Equal(0x00, h.In(5));
    }

    [Fact]
    public void Nien_suppresses_the_interrupt_until_cleared()
    {
        var h = new Harness(new FakeDisk(8));
        h.Control(AtaControl.NIen);
        h.Command(AtaCommand.IdleImmediate);
        Assert.False(h.Irq.Level);
        Assert.Equal(0, h.Irq.Raises);
        h.Control(0);
        Assert.True(h.Irq.Level); // still pending
        h.Status();
        Assert.False(h.Irq.Level);
    }

    [Fact]
    public void Alt_status_does_not_acknowledge_the_interrupt()
    {
        var h = new Harness(new FakeDisk(8));
        h.Command(AtaCommand.IdleImmediate);
        Assert.Equal(Ready, h.AltStatus());
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready, h.Status());
        Assert.False(h.Irq.Level);
    }

    [Fact]
    public void Srst_sets_busy_then_loads_the_signature()
    {
        var h = new Harness(new FakeDisk(8), new FakeDisk(8));
        h.Out(6, 0xB0);
        h.Lba28(1, 9, drive: 1);
        h.Command(AtaCommand.ReadSectors);
        h.Control(AtaControl.Srst);
        Assert.Equal(AtaStatus.Bsy, h.AltStatus());
        Assert.False(h.Irq.Level);
        h.Control(0);
        Assert.False(h.Irq.Level);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(1, h.In(2));
        Assert.Equal(1, h.In(3));
        Assert.Equal(0, h.In(4));
        Assert.Equal(0, h.In(5));
        Assert.Equal(1, h.In(1));
        Assert.Equal(0, h.In(6) & 0x10); // master selected
        Assert.Equal(0, h.InData()); // transfer was aborted
        h.Out(6, 0xB0);
        Assert.Equal(Ready, h.Status());
    }

    [Fact]
    public void Absent_slave_reads_zero_status_but_task_file_echoes_like_real_hardware()
    {
        var h = new Harness(new FakeDisk(8));
        h.Out(6, 0xB0);
        Assert.Equal(0, h.Status());
        Assert.Equal(0, h.AltStatus());
        // ata_devchk writes patterns to count/LBA low and reads them back; then classify sees DRDY clear → none.
        h.Out(2, 0x55);
        h.Out(3, 0xAA);
        Assert.Equal(0x55, h.In(2));
        Assert.Equal(0xAA, h.In(3));
        h.Command(AtaCommand.IdentifyDevice); // nobody answers
        Assert.False(h.Irq.Level);
        Assert.Equal(0, h.Status());
        Assert.Equal(0, h.InData());
        h.Out(6, 0xA0);
        Assert.Equal(Ready, h.Status());
    }

    [Fact]
    public void Channel_without_drives_floats_high()
    {
        var h = new Harness(null);
        Assert.Equal(0xFF, h.Status());
        Assert.Equal(0xFF, h.AltStatus());
    }

    [Fact]
    public void Hob_reads_the_previous_value_and_any_write_clears_hob()
    {
        var h = new Harness(new FakeDisk(8));
        h.Out(2, 0x12);
        h.Out(2, 0x34);
        h.Control(AtaControl.Hob);
        Assert.Equal(0x12, h.In(2));
        h.Out(3, 0x00);
        Assert.Equal(0x34, h.In(2));
    }

    [Fact]
    public void Writes_to_a_read_only_disk_abort()
    {
        var disk = new FakeDisk(8, readOnly: true);
        var h = new Harness(disk);
        byte before = disk.Data[512];
        h.Lba28(1, 1);
        h.Command(AtaCommand.WriteSectors);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Abrt, h.In(1));
        h.WriteBlock(new byte[512]);
        Assert.Equal(before, disk.Data[512]);
    }

    [Fact]
    public void Backend_errors_surface_as_ata_errors()
    {
        var disk = new FakeDisk(8);
        var h = new Harness(disk);
        h.Lba28(0, 1);
        h.Command(AtaCommand.WriteSectors);
        disk.FailWith = DiskIoResult.Host(5);
        h.WriteBlock(new byte[512]);
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Abrt, h.In(1));

        h.Lba28(0, 1);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Unc, h.In(1));

        h.Command(AtaCommand.FlushCache);
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Abrt, h.In(1));
    }

    [Fact]
    public void Slave_drive_serves_its_own_disk()
    {
        var master = new FakeDisk(8);
        var slave = new FakeDisk(8);
        slave.Data[512 * 3] = 0xEE;
        var h = new Harness(master, slave);
        h.Lba28(3, 1, drive: 1);
        h.Command(AtaCommand.ReadSectors);
        Assert.Equal(Ready | AtaStatus.Drq, h.Status());
        Assert.Equal(0xEE, h.ReadBlock(512)[0]);
        h.Out(6, 0xB0);
        Assert.Equal("SERIAL-S", Encoding.ASCII.GetString(SwapPairs(IdentifyBytes(h, 0xB0).AsSpan(20, 20).ToArray())).TrimEnd());
    }

    private static byte[] IdentifyBytes(Harness h, byte device)
    {
        h.Out(6, device);
        h.Command(AtaCommand.IdentifyDevice);
        h.Status();
        return h.ReadBlock(512);
    }

    private static byte[] SwapPairs(byte[] b)
    {
        for (int i = 0; i < b.Length; i += 2) (b[i], b[i + 1]) = (b[i + 1], b[i]);
        return b;
    }
}
