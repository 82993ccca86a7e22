using Csvmm.Devices.State;

namespace Csvmm.Machine.Tests;

/// <summary>The data-only machine spec: it survives encoding exactly, and a damaged or hostile encoding is refused.</summary>
public sealed class MachineSpecTests
{
    private static readonly MachineSpec Full = new()
    {
        Kernel = "/boot/vmlinuz-ünïcode", Initrd = "/boot/initrd", Append = "console=ttyS0 root=/dev/vda1", Firmware = null,
        Disks = [new("/img/a.raw", DiskInterface.Virtio, false, DiskCache.Writeback), new("/img/b.raw", DiskInterface.Ide, true, DiskCache.None)],
        MemoryBytes = 96UL << 20, Cpus = 2, NoReboot = true, Timeout = TimeSpan.FromSeconds(90),
    };

    [Fact]
    public void A_spec_survives_its_encoding_exactly()
    {
        Assert.Equal(Full, MachineSpec.Decode(Full.Encode()));
        var minimal = new MachineSpec { Firmware = "/usr/share/seabios/bios-256k.bin" };
        Assert.Equal(minimal, MachineSpec.Decode(minimal.Encode()));
        Assert.Null(MachineSpec.Decode(minimal.Encode()).Timeout);
    }

    [Fact]
    public void Specs_differing_in_any_field_are_not_equal()
    {
        Assert.NotEqual(Full, Full with { Cpus = 1 });
        Assert.NotEqual(Full, Full with { Disks = Full.Disks.Reverse().ToArray() });
        Assert.NotEqual(Full, Full with { Append = "" });
        Assert.Equal(Full, Full with { Disks = Full.Disks.ToList() }); // another list, same disks
    }

    [Fact]
    public void The_config_carries_the_spec_and_is_rebuilt_from_it()
    {
        var config = MachineConfig.For(Full) with { KvmDevice = "/dev/null" };
        Assert.Equal(Full, config.Spec);
        Assert.Empty(config.AttachedDisks); // host resources are not part of the spec
    }

    [Fact]
    public void Every_truncation_and_trailing_byte_is_refused()
    {
        byte[] good = Full.Encode();
        for (int n = 0; n < good.Length; n++)
            Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(good.AsSpan(0, n)));
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode([.. good, 0]));
    }

    [Fact]
    public void Impossible_values_are_refused()
    {
        byte[] good = new MachineSpec { Cpus = 1 }.Encode();
        // Layout of this spec: version(2) + 4 absent-or-empty texts + disk count(2) + memory(8) + cpus(4) + 2 bools + ticks(8).
        int memoryAt = good.Length - 8 - 2 - 4 - 8, cpusAt = memoryAt + 8;
        byte[] bad = good.ToArray();
        BitConverter.TryWriteBytes(bad.AsSpan(memoryAt), 4097UL);
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(bad));
        bad = good.ToArray();
        BitConverter.TryWriteBytes(bad.AsSpan(cpusAt), 0u);
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(bad));
        bad = good.ToArray();
        bad[0] = 2; // version 2
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(bad));
    }

    [Fact]
    public void A_hostile_disk_count_or_text_length_is_refused_before_allocating()
    {
        byte[] good = new MachineSpec { Kernel = "k" }.Encode();
        byte[] hugeText = good.ToArray();
        BitConverter.TryWriteBytes(hugeText.AsSpan(3), uint.MaxValue); // the kernel path's length
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(hugeText));

        byte[] noKernel = new MachineSpec().Encode();
        int diskCountAt = 2 + 1 + 1 + 5 + 1; // version, kernel absent, initrd absent, append "" (flag + length), firmware absent
        byte[] manyDisks = noKernel.ToArray();
        BitConverter.TryWriteBytes(manyDisks.AsSpan(diskCountAt), (ushort)60000);
        var e = Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(manyDisks));
        Assert.Contains("60000 disks", e.Message);
    }

    [Fact]
    public void A_path_that_is_not_utf8_is_refused()
    {
        byte[] good = new MachineSpec { Kernel = "k" }.Encode();
        good[7] = 0xFF; // the kernel path's one byte
        Assert.Throws<DeviceStateException>(() => MachineSpec.Decode(good));
    }
}
