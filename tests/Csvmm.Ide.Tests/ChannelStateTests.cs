using Csvmm.Devices.State;

namespace Csvmm.Ide.Tests;

/// <summary>An IDE channel's state saved in the middle of a command and loaded into a fresh channel.</summary>
public sealed class ChannelStateTests
{
    [Fact]
    public void A_pio_read_saved_mid_block_goes_on_in_the_restored_channel()
    {
        var disk = new FakeDisk(64);
        var a = new Harness(disk);
        a.Out(6, 0xE0);
        a.Out(2, 4);               // SET MULTIPLE 4
        a.Out(7, AtaCommand.SetMultipleMode);
        a.Lba28(10, 3);
        a.Out(7, AtaCommand.ReadMultiple);
        byte[] first = a.ReadBlock(1000); // the 3 sectors are one block (multiple 4); stop part-way

        var record = DeviceStateRecord.Save(a.Channel);
        var b = new Harness(disk);
        DeviceStateRecord.Load(b.Channel, record);
        Assert.True(b.Irq.Level == a.Irq.Level);
        byte[] rest = b.ReadBlock(3 * 512 - 1000);
        Assert.Equal(disk.Data.AsSpan(10 * 512, 3 * 512).ToArray(), first.Concat(rest).ToArray());
        Assert.Equal(a.Channel.GetDrive(0)!.MultipleSectors, b.Channel.GetDrive(0)!.MultipleSectors);
        Assert.Equal(0x50, b.Status() & 0xF9); // DRDY | DSC, no DRQ: done
        Assert.Equal(12, b.In(3));              // the last sector transferred
    }

    [Fact]
    public void A_state_for_another_disk_or_drive_layout_is_refused_and_nothing_changes()
    {
        var a = new Harness(new FakeDisk(64));
        a.Lba28(5, 1);
        a.Out(7, AtaCommand.ReadSectors);
        var state = DeviceStateRecord.Save(a.Channel);

        var bigger = new Harness(new FakeDisk(128));
        Assert.Contains("not the same disk", Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(bigger.Channel, state)).Message);
        Assert.Equal(0x50, bigger.Status() & 0xF9); // still its own idle state

        var twoDrives = new Harness(new FakeDisk(64), new FakeDisk(64));
        Assert.Contains("drive 1", Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(twoDrives.Channel, state)).Message);
    }

    [Fact]
    public void Truncated_trailing_and_impossible_states_are_refused()
    {
        var a = new Harness(new FakeDisk(64));
        var w = new StateWriter();
        a.Channel.SaveState(w);
        byte[] good = w.Written.ToArray();
        var b = new Harness(new FakeDisk(64));
        b.Channel.LoadState(good, 1);
        Assert.Throws<DeviceStateException>(() => b.Channel.LoadState(good, 2));
        Assert.Throws<DeviceStateException>(() => b.Channel.LoadState(good[..^1], 1));
        Assert.Throws<DeviceStateException>(() => b.Channel.LoadState([.. good, 0], 1));
        var bad = (byte[])good.Clone();
        // The transfer kind follows 10 task-file bytes, device, control, irq flag and two 4+2-byte blocks.
        int at = 10 + 3 + 6 + 6;
        bad[at] = 9;
        Assert.Contains("transfer kind 9", Assert.Throws<DeviceStateException>(() => b.Channel.LoadState(bad, 1)).Message);
    }
}
