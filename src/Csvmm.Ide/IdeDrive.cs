using System.Buffers.Binary;
using Csvmm.Block;

namespace Csvmm.Ide;

/// <summary>
/// One ATA hard disk on an IDE channel: the backend, its IDENTIFY DEVICE data and the per-drive settings the guest
/// changes (multiple count, logical CHS geometry, write cache). Register protocol lives in <see cref="IdeChannel"/>.
/// </summary>
public sealed class IdeDrive
{
    /// <summary>Bytes per sector on the ATA interface.</summary>
    public const int SectorSize = 512;

    /// <summary>The largest READ/WRITE MULTIPLE block this drive accepts (IDENTIFY word 47).</summary>
    public const int MaxMultipleSectors = 16;

    /// <summary>The largest sector count addressable with LBA28 (IDENTIFY words 60-61 cap).</summary>
    public const uint Lba28Limit = 0x0FFF_FFFF;

    /// <summary>Default CHS translation heads.</summary>
    public const int DefaultHeads = 16;

    /// <summary>Default CHS translation sectors per track.</summary>
    public const int DefaultSectorsPerTrack = 63;

    /// <summary>The model string reported in IDENTIFY DEVICE.</summary>
    public const string Model = "CSVMM HARDDISK";

    /// <summary>The firmware revision reported in IDENTIFY DEVICE.</summary>
    public const string Firmware = "1.0";

    private readonly string _serial;

    /// <summary>Wraps <paramref name="disk"/>; <paramref name="serial"/> (ASCII, ≤ 20 characters) is the IDENTIFY serial number.</summary>
    public IdeDrive(IDiskBackend disk, string serial = "CSVMM0001")
    {
        ArgumentNullException.ThrowIfNull(disk);
        ArgumentNullException.ThrowIfNull(serial);
        if (disk.LogicalBlockSize != SectorSize)
            throw new ArgumentException($"IDE needs 512-byte sectors, disk has {disk.LogicalBlockSize}: {disk.Describe}", nameof(disk));
        if (serial.Length > 20 || !System.Text.Ascii.IsValid(serial))
            throw new ArgumentException($"IDE serial must be at most 20 ASCII characters: '{serial}'", nameof(serial));
        Disk = disk;
        _serial = serial;
        SectorCount = disk.SectorCount();
        ulong cylinders = SectorCount / (DefaultHeads * DefaultSectorsPerTrack);
        DefaultCylinders = (int)Math.Clamp(cylinders, 1UL, 16383UL);
        LogicalHeads = DefaultHeads;
        LogicalSectorsPerTrack = DefaultSectorsPerTrack;
    }

    /// <summary>The storage behind this drive.</summary>
    public IDiskBackend Disk { get; }

    /// <summary>Capacity in 512-byte sectors.</summary>
    public ulong SectorCount { get; }

    /// <summary>Default CHS cylinders (IDENTIFY word 1), capped at 16383.</summary>
    public int DefaultCylinders { get; }

    /// <summary>Heads of the current CHS translation (INITIALIZE DEVICE PARAMETERS changes it).</summary>
    public int LogicalHeads { get; private set; }

    /// <summary>Sectors per track of the current CHS translation.</summary>
    public int LogicalSectorsPerTrack { get; private set; }

    /// <summary>The READ/WRITE MULTIPLE block size in sectors; 0 = multiple mode disabled.</summary>
    public int MultipleSectors { get; private set; }

    /// <summary>Whether the guest has the volatile write cache enabled (SET FEATURES 02h/82h).</summary>
    public bool WriteCacheEnabled { get; internal set; } = true;

    /// <summary>Cylinders of the current CHS translation (capped at 65535 and at what the disk holds).</summary>
    public int LogicalCylinders
    {
        get
        {
            ulong perCylinder = (ulong)LogicalHeads * (ulong)LogicalSectorsPerTrack;
            return (int)Math.Min(SectorCount / perCylinder, 65535UL);
        }
    }

    /// <summary>Whether the channel does bus-master DMA (IDENTIFY then advertises multiword/Ultra DMA).</summary>
    public bool DmaSupported { get; private set; }

    /// <summary>The transfer mode set by SET FEATURES 03h for DMA: 0x20-0x22 multiword, 0x40-0x45 Ultra DMA; 0 = none selected.</summary>
    public byte DmaMode { get; private set; }

    internal void AttachDma(bool supported) => DmaSupported = supported;

    /// <summary>SET FEATURES 03h with a DMA mode: accepted only when the channel does DMA.</summary>
    internal bool TrySetDmaMode(byte mode)
    {
        if (!DmaSupported || !((mode >= 0x20 && mode <= 0x22) || (mode >= 0x40 && mode <= 0x45))) return false;
        DmaMode = mode;
        return true;
    }

    /// <summary>Back to power-on settings (hardware reset; SRST keeps them as real drives do).</summary>
    internal void ResetSettings()
    {
        LogicalHeads = DefaultHeads;
        LogicalSectorsPerTrack = DefaultSectorsPerTrack;
        MultipleSectors = 0;
        WriteCacheEnabled = true;
        DmaMode = 0;
    }

    /// <summary>Settings from a saved state (validated by the channel).</summary>
    internal void LoadSettings(int heads, int sectorsPerTrack, int multiple, bool writeCache, byte dmaMode)
    {
        LogicalHeads = heads;
        LogicalSectorsPerTrack = sectorsPerTrack;
        MultipleSectors = multiple;
        WriteCacheEnabled = writeCache;
        DmaMode = dmaMode;
    }

    /// <summary>SET MULTIPLE MODE: 0 disables, otherwise a power of two up to <see cref="MaxMultipleSectors"/>.</summary>
    internal bool TrySetMultiple(int count)
    {
        if (count > MaxMultipleSectors || (count & (count - 1)) != 0) return false;
        MultipleSectors = count;
        return true;
    }

    /// <summary>INITIALIZE DEVICE PARAMETERS: heads 1..16, sectors per track 1..255.</summary>
    internal bool TrySetGeometry(int heads, int sectorsPerTrack)
    {
        if (heads < 1 || heads > 16 || sectorsPerTrack < 1 || sectorsPerTrack > 255) return false;
        LogicalHeads = heads;
        LogicalSectorsPerTrack = sectorsPerTrack;
        return true;
    }

    /// <summary>Translates a CHS address (sector 1-based) to an LBA; false when it is outside the current translation.</summary>
    internal bool TryChsToLba(int cylinder, int head, int sector, out ulong lba)
    {
        lba = 0;
        if (sector < 1 || sector > LogicalSectorsPerTrack || head >= LogicalHeads) return false;
        lba = (((ulong)cylinder * (ulong)LogicalHeads) + (ulong)head) * (ulong)LogicalSectorsPerTrack + (ulong)(sector - 1);
        return true;
    }

    /// <summary>Writes the 512-byte IDENTIFY DEVICE block (little-endian words, ATA byte-swapped strings, checksum) into <paramref name="block"/>.</summary>
    public void WriteIdentify(Span<byte> block)
    {
        if (block.Length < SectorSize) throw new ArgumentException("IDENTIFY needs a 512-byte buffer", nameof(block));
        block = block[..SectorSize];
        block.Clear();
        ulong lba28 = Math.Min(SectorCount, Lba28Limit);
        int cylinders = LogicalCylinders;
        ulong chsCapacity = (ulong)cylinders * (ulong)LogicalHeads * (ulong)LogicalSectorsPerTrack;

        SetWord(block, 0, 0x0040);                         // fixed device, ATA
        SetWord(block, 1, (ushort)DefaultCylinders);
        SetWord(block, 3, DefaultHeads);
        SetWord(block, 6, DefaultSectorsPerTrack);
        SetString(block, 10, 20, _serial);
        SetString(block, 23, 8, Firmware);
        SetString(block, 27, 40, Model);
        SetWord(block, 47, 0x8000 | MaxMultipleSectors);
        SetWord(block, 49, DmaSupported ? 0x0300 : 0x0200); // LBA (+ DMA) supported
        SetWord(block, 50, 0x4000);
        SetWord(block, 51, 0x0200);                        // PIO mode 2 timing
        SetWord(block, 53, DmaSupported ? 0x0007 : 0x0003); // words 54-58, 64-70 (and 88) valid
        SetWord(block, 54, (ushort)cylinders);
        SetWord(block, 55, (ushort)LogicalHeads);
        SetWord(block, 56, (ushort)LogicalSectorsPerTrack);
        SetWord(block, 57, (ushort)chsCapacity);
        SetWord(block, 58, (ushort)(chsCapacity >> 16));
        SetWord(block, 59, (ushort)(MultipleSectors != 0 ? 0x0100 | MultipleSectors : 0));
        SetWord(block, 60, (ushort)lba28);
        SetWord(block, 61, (ushort)(lba28 >> 16));
        if (DmaSupported)
        {
            int mw = DmaMode is >= 0x20 and <= 0x22 ? 1 << (DmaMode - 0x20) : 0;
            int udma = DmaMode is >= 0x40 and <= 0x45 ? 1 << (DmaMode - 0x40) : 0;
            SetWord(block, 63, 0x0007 | (mw << 8));       // multiword DMA 0-2
            SetWord(block, 88, 0x003F | (udma << 8));     // Ultra DMA 0-5
        }
        SetWord(block, 64, 0x0003);                        // PIO modes 3 and 4
        SetWord(block, 65, 120);
        SetWord(block, 66, 120);
        SetWord(block, 67, 120);
        SetWord(block, 68, 120);
        SetWord(block, 80, 0x01F0);                        // ATA-4 .. ATA8-ACS
        SetWord(block, 82, 0x0020);                        // write cache supported
        SetWord(block, 83, 0x7400);                        // FLUSH CACHE EXT, FLUSH CACHE, LBA48
        SetWord(block, 84, 0x4000);
        SetWord(block, 85, (ushort)(WriteCacheEnabled ? 0x0020 : 0));
        SetWord(block, 86, 0x3400);                        // same, enabled
        SetWord(block, 87, 0x4000);
        SetWord(block, 100, (ushort)SectorCount);
        SetWord(block, 101, (ushort)(SectorCount >> 16));
        SetWord(block, 102, (ushort)(SectorCount >> 32));
        SetWord(block, 103, (ushort)(SectorCount >> 48));
        SetWord(block, 106, 0x4000);                       // 512-byte logical sectors, no multiple per physical

        block[510] = 0xA5;                                 // integrity word: signature + checksum
        byte sum = 0;
        for (int i = 0; i < 511; i++) sum += block[i];
        block[511] = (byte)-sum;
    }

    private static void SetWord(Span<byte> block, int word, int value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(word * 2, 2), (ushort)value);

    /// <summary>An ATA string: space padded, two characters per word with the first in the high byte.</summary>
    private static void SetString(Span<byte> block, int word, int length, string text)
    {
        Span<byte> field = block.Slice(word * 2, length);
        for (int i = 0; i < length; i++)
        {
            byte c = i < text.Length ? (byte)text[i] : (byte)' ';
            field[i ^ 1] = c;
        }
    }
}
