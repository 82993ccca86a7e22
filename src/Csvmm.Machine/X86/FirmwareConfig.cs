using System.Buffers.Binary;
using System.Text;
using Csvmm.Acpi;
using Csvmm.Boot;
using Csvmm.Devices.FwCfg;
using Csvmm.Memory;

namespace Csvmm.Machine.X86;

/// <summary>
/// What csvmm's PC tells firmware through fw_cfg, in the items and files QEMU's i440FX machine uses, so that a
/// QEMU-targeted BIOS (Debian's SeaBIOS) sets the platform up as it does under QEMU:
/// <list type="bullet">
/// <item>legacy items: vCPU count (0x05) and maximum (0x0f), RAM size (0x03), no boot menu (0x0e = 0: no
/// "Press ESC" pause), IRQ0 routed to IOAPIC pin 2 (0x8002 = 1, as the MADT says);</item>
/// <item><c>etc/e820</c>: every RAM region, and the KVM identity-map/TSS pages reserved;</item>
/// <item><c>etc/boot-cpus</c>, <c>etc/sercon-port</c> (0x3F8 when COM1 is the console: SeaBIOS then mirrors its
/// INT 10h text output and reads keys on the serial line, as with QEMU's <c>-nographic</c>);</item>
/// <item><c>bootorder</c>: the disks in the order they were given, as OpenFirmware paths SeaBIOS matches;</item>
/// <item><c>etc/acpi/rsdp</c>, <c>etc/acpi/tables</c>, <c>etc/table-loader</c>: csvmm's own ACPI tables
/// (<see cref="AcpiTableLoader"/>), so a firmware-booted guest sees the same static DSDT as a directly booted one.</item>
/// </list>
/// </summary>
public static class FirmwareConfig
{
    /// <summary>The fw_cfg I/O base on x86 (selector; data at +1, DMA address at +4).</summary>
    public const ushort Port = 0x510;

    /// <summary>Legacy keys (QEMU's include/standard-headers/linux/qemu_fw_cfg.h).</summary>
    public const ushort RamSizeKey = 0x03, NbCpusKey = 0x05, BootMenuKey = 0x0e, MaxCpusKey = 0x0f, Irq0OverrideKey = 0x8002;

    /// <summary>One disk's position on the platform, for the boot order.</summary>
    public readonly record struct BootDisk(DiskInterface Interface, int Index);

    /// <summary>The fw_cfg content for a machine.</summary>
    /// <param name="memory">Guest memory, its RAM regions already added.</param>
    /// <param name="cpus">vCPUs.</param>
    /// <param name="disks">The disks in boot order (the order of --disk), each with its index among its interface's disks.</param>
    /// <param name="serialConsole">COM1 is connected: let firmware use it as its console.</param>
    public static FwCfgContent Build(GuestMemory memory, int cpus, IReadOnlyList<BootDisk> disks, bool serialConsole)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(disks);
        var b = new FwCfgContent.Builder()
            .Item16(NbCpusKey, (ushort)cpus)
            .Item16(MaxCpusKey, (ushort)cpus)
            .Item64(RamSizeKey, memory.RamSize)
            .Item16(BootMenuKey, 0)
            .Item(Irq0OverrideKey, [1, 0, 0, 0])
            .File("etc/e820", E820(memory))
            .File16("etc/boot-cpus", (ushort)cpus);
        if (serialConsole) b.File16("etc/sercon-port", Layout.Com1);
        if (disks.Count > 0) b.File("bootorder", Encoding.ASCII.GetBytes(BootOrder(disks)));

        var acpi = AcpiTableLoader.Build(Platform.AcpiConfigFor(cpus));
        b.File(AcpiTableLoader.RsdpFile, acpi.Rsdp)
         .File(AcpiTableLoader.TablesFile, acpi.Tables)
         .File(AcpiTableLoader.LoaderFile, acpi.Loader);
        return b.Build(dma: true);
    }

    /// <summary>
    /// The <c>bootorder</c> file: one OpenFirmware device path per line, NUL-terminated, in the paths QEMU gives
    /// (SeaBIOS compares its own "/pci@i0cf8/*@1,1/drive@0/disk@1"-style names against them as prefixes).
    /// </summary>
    public static string BootOrder(IReadOnlyList<BootDisk> disks)
    {
        var sb = new StringBuilder();
        foreach (var d in disks)
        {
            sb.Append(d.Interface switch
            {
                DiskInterface.Ide => $"/pci@i0cf8/ide@{Layout.IdePciDevice:x},{Layout.IdePciFunction:x}/drive@{d.Index / 2:x}/disk@{d.Index % 2:x}",
                _ => $"/pci@i0cf8/scsi@{Layout.FirstVirtioPciDevice + d.Index:x}/disk@0,0",
            });
            sb.Append('\n');
        }
        sb.Append('\0');
        return sb.ToString();
    }

    /// <summary>
    /// <c>etc/e820</c>: 20-byte little-endian entries {address, length, type}: each RAM region, then the pages KVM's
    /// identity map and TSS occupy (reserved, as QEMU lists them). Firmware keeps its own low-memory holes.
    /// </summary>
    public static byte[] E820(GuestMemory memory)
    {
        var entries = new List<(ulong Address, ulong Length, E820Type Type)>();
        foreach (var region in memory.Regions)
            if (!region.ReadOnly) entries.Add((region.Start.Value, region.Size, E820Type.Ram));
        entries.Add((Layout.IdentityMap.Value, Layout.TssAddress.Value - Layout.IdentityMap.Value + 3 * 4096UL, E820Type.Reserved));
        var bytes = new byte[20 * entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            var e = bytes.AsSpan(20 * i, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(e, entries[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], entries[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)entries[i].Type);
        }
        return bytes;
    }
}

/// <summary>Guest RAM as fw_cfg's DMA sees it: whole ranges inside one RAM region (ROM is not a DMA target).</summary>
internal sealed class GuestMemoryDma(GuestMemory memory) : IDmaMemory
{
    private const int Chunk = 1 << 20;

    private GuestRegion? Ram(ulong address, ulong length) =>
        memory.FindRegion(new GuestAddress(address), length) is { ReadOnly: false } r ? r : null;

    public bool Read(ulong address, Span<byte> destination)
    {
        if (memory.FindRegion(new GuestAddress(address), (ulong)destination.Length) is null) return false;
        memory.ReadBytes(new GuestAddress(address), destination);
        return true;
    }

    public bool Write(ulong address, ReadOnlySpan<byte> source)
    {
        if (Ram(address, (ulong)source.Length) is null) return false;
        memory.WriteBytes(new GuestAddress(address), source);
        return true;
    }

    public bool Zero(ulong address, ulong length)
    {
        if (Ram(address, length) is null) return false;
        for (ulong done = 0; done < length;)
        {
            int n = (int)Math.Min(Chunk, length - done);
            memory.Fill(new GuestAddress(address + done), n);
            done += (ulong)n;
        }
        return true;
    }
}
