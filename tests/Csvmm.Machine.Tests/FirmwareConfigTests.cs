using System.Buffers.Binary;
using System.Text;
using Csvmm.Acpi;
using Csvmm.Boot;
using Csvmm.Devices.FwCfg;
using Csvmm.Machine.X86;
using Csvmm.Memory;

namespace Csvmm.Machine.Tests;

/// <summary>What csvmm's fw_cfg tells firmware, read back through the device and real guest memory (no KVM needed).</summary>
public sealed class FirmwareConfigTests : IDisposable
{
    private readonly GuestMemory _memory = new();

    public FirmwareConfigTests()
    {
        _memory.AddRegion(GuestAddress.Zero, 64UL << 20, "ram-low");
    }

    public void Dispose() => _memory.Dispose();

    private static FirmwareConfig.BootDisk Ide(int i) => new(DiskInterface.Ide, i);
    private static FirmwareConfig.BootDisk Virtio(int i) => new(DiskInterface.Virtio, i);

    /// <summary>Reads a file the way SeaBIOS does with DMA: the directory, then a select+read into guest RAM.</summary>
    private static byte[]? ReadFile(FwCfgDevice device, GuestMemory memory, string name)
    {
        const ulong access = 0x10000, buffer = 0x20000;
        void Dma(uint control, uint length)
        {
            Span<byte> a = stackalloc byte[16];
            BinaryPrimitives.WriteUInt32BigEndian(a, control);
            BinaryPrimitives.WriteUInt32BigEndian(a[4..], length);
            BinaryPrimitives.WriteUInt64BigEndian(a[8..], buffer);
            memory.WriteBytes(new GuestAddress(access), a);
            Span<byte> reg = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(reg, access);
            device.Write(4, reg);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(memory.GetSpan(new GuestAddress(access), 4)));
        }
        Dma((FwCfgContent.FileDirectoryKey << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, 4);
        uint count = BinaryPrimitives.ReadUInt32BigEndian(memory.GetSpan(new GuestAddress(buffer), 4));
        for (uint i = 0; i < count; i++)
        {
            Dma(FwCfgDevice.DmaRead, 64);
            var e = memory.GetSpan(new GuestAddress(buffer), 64).ToArray();
            if (Encoding.ASCII.GetString(e, 8, 56).TrimEnd('\0') != name) continue;
            uint size = BinaryPrimitives.ReadUInt32BigEndian(e);
            ushort key = BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(4));
            Dma(((uint)key << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, size);
            return memory.GetSpan(new GuestAddress(buffer), (int)size).ToArray();
        }
        return null;
    }

    [Fact]
    public void E820_lists_every_ram_region_and_reserves_the_kvm_pages()
    {
        using var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, Layout.MmioHoleStart.Value, "ram-low");
        memory.AddRegion(Layout.FourGiB, 1UL << 30, "ram-high");
        memory.AddRegion(new GuestAddress(0xFFFC_0000), 0x40000, "bios", readOnly: true);
        var e820 = FirmwareConfig.E820(memory);
        Assert.Equal(3 * 20, e820.Length);
        (ulong, ulong, uint) Entry(int i) => (BinaryPrimitives.ReadUInt64LittleEndian(e820.AsSpan(20 * i)),
            BinaryPrimitives.ReadUInt64LittleEndian(e820.AsSpan(20 * i + 8)), BinaryPrimitives.ReadUInt32LittleEndian(e820.AsSpan(20 * i + 16)));
        Assert.Equal((0UL, 0xC000_0000UL, 1u), Entry(0));
        Assert.Equal((0x1_0000_0000UL, 1UL << 30, 1u), Entry(1));
        Assert.Equal((0xFEFF_C000UL, 0x4000UL, 2u), Entry(2));
    }

    [Fact]
    public void Boot_order_follows_the_disks_in_qemu_paths_that_seabios_matches()
    {
        string order = FirmwareConfig.BootOrder([Virtio(1), Ide(0), Ide(3), Virtio(0)]);
        Assert.Equal("/pci@i0cf8/scsi@3/disk@0,0\n/pci@i0cf8/ide@1,1/drive@0/disk@0\n/pci@i0cf8/ide@1,1/drive@1/disk@1\n/pci@i0cf8/scsi@2/disk@0,0\n\0", order);
        // SeaBIOS's names for the same devices are globs ("*" up to '@' or '/') that must be prefixes of a line.
        Assert.True(SeaBiosMatches("/pci@i0cf8/*@1,1/drive@1/disk@1", order.Split('\n')[2]));
        Assert.True(SeaBiosMatches("/pci@i0cf8/*@2", order.Split('\n')[3]));
        Assert.False(SeaBiosMatches("/pci@i0cf8/*@2", order.Split('\n')[0]));
    }

    /// <summary>SeaBIOS's glob_prefix (src/boot.c): '*' matches up to the next '/' or '@'; the glob must be a prefix.</summary>
    private static bool SeaBiosMatches(string glob, string str)
    {
        int g = 0, s = 0;
        while (true)
        {
            if (g == glob.Length) return true;
            if (glob[g] == '*')
            {
                if (s == str.Length || str[s] == '/' || str[s] == '@') g++;
                else s++;
                continue;
            }
            if (s == str.Length || glob[g] != str[s]) return false;
            g++; s++;
        }
    }

    [Fact]
    public void Firmware_reads_the_platform_through_dma_into_guest_ram()
    {
        var content = FirmwareConfig.Build(_memory, 2, [Ide(0)], serialConsole: true);
        var device = new FwCfgDevice(content, new GuestMemoryDma(_memory));
        Assert.Equal(new byte[] { 0xF8, 0x03 }, ReadFile(device, _memory, "etc/sercon-port"));
        Assert.Equal(new byte[] { 2, 0 }, ReadFile(device, _memory, "etc/boot-cpus"));
        Assert.Equal(FirmwareConfig.E820(_memory), ReadFile(device, _memory, "etc/e820"));
        Assert.Equal("/pci@i0cf8/ide@1,1/drive@0/disk@0\n\0", Encoding.ASCII.GetString(ReadFile(device, _memory, "bootorder")!));
        var acpi = AcpiTableLoader.Build(Platform.AcpiConfigFor(2));
        Assert.Equal(acpi.Tables, ReadFile(device, _memory, AcpiTableLoader.TablesFile));
        Assert.Equal(acpi.Rsdp, ReadFile(device, _memory, AcpiTableLoader.RsdpFile));
        Assert.Equal(acpi.Loader, ReadFile(device, _memory, AcpiTableLoader.LoaderFile));
        Assert.Equal(new byte[] { 0, 0 }, content.Item(FirmwareConfig.BootMenuKey));
        Assert.Equal(64UL << 20, BinaryPrimitives.ReadUInt64LittleEndian(content.Item(FirmwareConfig.RamSizeKey)));
    }

    [Fact]
    public void No_disks_no_boot_order_and_no_console_no_sercon()
    {
        var content = FirmwareConfig.Build(_memory, 1, [], serialConsole: false);
        Assert.Null(content.File("bootorder"));
        Assert.Null(content.File("etc/sercon-port"));
        Assert.NotNull(content.File("etc/table-loader"));
    }

    [Fact]
    public void Dma_refuses_rom_and_ranges_past_ram()
    {
        using var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, 1UL << 20, "ram-low");
        memory.AddRegion(new GuestAddress(0xFFFF_0000), 0x10000, "bios", readOnly: true);
        var dma = new GuestMemoryDma(memory);
        Assert.False(dma.Write(0xFFFF_0000, [1]));
        Assert.False(dma.Zero(0xFFFF_0000, 1));
        Assert.True(dma.Read(0xFFFF_0000, new byte[4]));   // reading ROM is fine (the access structure could be there)
        Assert.False(dma.Write((1UL << 20) - 2, [1, 2, 3]));
        Assert.False(dma.Zero(ulong.MaxValue, 2));
        Assert.True(dma.Zero(0, 1UL << 20));
        Assert.False(dma.Read(1UL << 20, new byte[1]));
    }
}
