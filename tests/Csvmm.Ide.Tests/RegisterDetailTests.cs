using Csvmm.Block;

namespace Csvmm.Ide.Tests;

public class RegisterDetailTests
{
    private const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;

    [Fact]
    public void Address_registers_report_the_last_sector_after_an_lba48_transfer()
    {
        var h = new Harness(FakeDisk.Sparse((1UL << 33) + 16));
        ulong lba = (1UL << 32) + 0x0102_0304;
        h.Lba48(lba, 2);
        h.Command(AtaCommand.ReadSectorsExt);
        h.Status(); h.ReadBlock(512);
        h.Status(); h.ReadBlock(512);
        Assert.Equal(Ready, h.Status());
        ulong last = lba + 1;
        Assert.Equal((byte)last, h.In(3));
        Assert.Equal((byte)(last >> 8), h.In(4));
        Assert.Equal((byte)(last >> 16), h.In(5));
        h.Control(AtaControl.Hob);
        Assert.Equal((byte)(last >> 24), h.In(3));
        Assert.Equal((byte)(last >> 32), h.In(4));
        Assert.Equal((byte)(last >> 40), h.In(5));
    }

    [Fact]
    public void Address_registers_report_the_failing_sector_on_a_backend_error()
    {
        var disk = new FakeDisk(64);
        var h = new Harness(disk);
        h.Lba28(0x21, 3);
        h.Command(AtaCommand.ReadSectors);
        h.Status();
        h.ReadBlock(512);
        disk.FailWith = DiskIoResult.Host(5);
        h.ReadBlock(512); // finishing sector 0x22 makes the drive fetch 0x23, which fails
        Assert.Equal(Ready | AtaStatus.Err, h.Status());
        Assert.Equal(AtaError.Unc, h.In(1));
        Assert.Equal(0x23, h.In(3));
    }

    [Fact]
    public void Data_port_accepts_32_bit_accesses()
    {
        var disk = new FakeDisk(8);
        var h = new Harness(disk);
        h.Lba28(2, 1);
        h.Command(AtaCommand.ReadSectors);
        var got = new byte[512];
        for (int i = 0; i < 512; i += 4) h.Channel.CommandBlock.Read(0, got.AsSpan(i, 4));
        Assert.Equal(disk.Data.AsSpan(1024, 512).ToArray(), got);
        Assert.Equal(Ready, h.Status());
    }

    [Fact]
    public void Execute_device_diagnostic_loads_signature_and_interrupts()
    {
        var h = new Harness(new FakeDisk(8));
        h.Out(2, 0x77);
        h.Out(4, 0x99);
        h.Command(AtaCommand.ExecuteDeviceDiagnostic);
        Assert.True(h.Irq.Level);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(1, h.In(1));
        Assert.Equal(1, h.In(2));
        Assert.Equal(0, h.In(4));
    }

    [Fact]
    public void Hardware_reset_restores_power_on_settings()
    {
        var h = new Harness(new FakeDisk(64));
        h.Out(2, 8);
        h.Command(AtaCommand.SetMultipleMode);
        Assert.Equal(Ready, h.Status());
        Assert.Equal(8, h.Channel.GetDrive(0)!.MultipleSectors);
        h.Control(AtaControl.NIen);
        h.Channel.Reset();
        Assert.Equal(0, h.Channel.GetDrive(0)!.MultipleSectors);
        h.Command(AtaCommand.IdleImmediate);
        Assert.True(h.Irq.Level); // nIEN cleared by the reset
    }

    [Fact]
    public void Set_features_write_cache_shows_in_identify_word_85()
    {
        var h = new Harness(new FakeDisk(8));
        h.Out(1, 0x82);
        h.Command(AtaCommand.SetFeatures);
        Assert.Equal(Ready, h.Status());
        h.Command(AtaCommand.IdentifyDevice);
        h.Status();
        byte[] id = h.ReadBlock(512);
        Assert.Equal(0, id[85 * 2] & 0x20);
        Assert.False(h.Channel.GetDrive(0)!.WriteCacheEnabled);
    }

    [Fact]
    public void Constructors_refuse_a_bad_serial_and_a_drive_used_twice()
    {
        Assert.Throws<ArgumentException>(() => new IdeDrive(new FakeDisk(8), new string('x', 21)));
        var d = new IdeDrive(new FakeDisk(8));
        Assert.Throws<ArgumentException>(() => new IdeChannel(new RecordingIrq(), d, d));
    }
}
