namespace Csvmm.Ide;

/// <summary>ATA status register bits (ATA-8 ACS, 7.x "Status").</summary>
public static class AtaStatus
{
    /// <summary>Error: the error register holds the reason.</summary>
    public const byte Err = 0x01;
    /// <summary>Data request: the device is ready to move a data block through the data port.</summary>
    public const byte Drq = 0x08;
    /// <summary>Device seek complete (obsolete, still set by every drive).</summary>
    public const byte Dsc = 0x10;
    /// <summary>Device fault.</summary>
    public const byte Df = 0x20;
    /// <summary>Device ready.</summary>
    public const byte Drdy = 0x40;
    /// <summary>Busy: every other bit is invalid.</summary>
    public const byte Bsy = 0x80;
}

/// <summary>ATA error register bits.</summary>
public static class AtaError
{
    /// <summary>Command aborted (unsupported command or parameter, write protect, write failure).</summary>
    public const byte Abrt = 0x04;
    /// <summary>ID not found: the address is outside the disk.</summary>
    public const byte Idnf = 0x10;
    /// <summary>Uncorrectable data error (a read failed).</summary>
    public const byte Unc = 0x40;
}

/// <summary>Device control register bits (written through the control block).</summary>
public static class AtaControl
{
    /// <summary>Interrupt disable: INTRQ is not asserted while set.</summary>
    public const byte NIen = 0x02;
    /// <summary>Software reset of both drives on the channel.</summary>
    public const byte Srst = 0x04;
    /// <summary>High order byte: task-file reads return the previously written (LBA48 high) values.</summary>
    public const byte Hob = 0x80;
}

/// <summary>The ATA command opcodes the IDE drive implements.</summary>
public static class AtaCommand
{
    public const byte Recalibrate = 0x10; // 0x10..0x1F
    public const byte ReadSectors = 0x20;
    public const byte ReadSectorsNoRetry = 0x21;
    public const byte ReadSectorsExt = 0x24;
    public const byte ReadNativeMaxAddressExt = 0x27;
    public const byte ReadMultipleExt = 0x29;
    public const byte WriteSectors = 0x30;
    public const byte WriteSectorsNoRetry = 0x31;
    public const byte WriteSectorsExt = 0x34;
    public const byte WriteMultipleExt = 0x39;
    public const byte ReadVerifySectors = 0x40;
    public const byte ReadVerifySectorsNoRetry = 0x41;
    public const byte ReadVerifySectorsExt = 0x42;
    public const byte ExecuteDeviceDiagnostic = 0x90;
    public const byte InitializeDeviceParameters = 0x91;
    public const byte ReadDmaExt = 0x25;
    public const byte WriteDmaExt = 0x35;
    public const byte ReadDma = 0xC8;
    public const byte ReadDmaNoRetry = 0xC9;
    public const byte WriteDma = 0xCA;
    public const byte WriteDmaNoRetry = 0xCB;
    public const byte ReadMultiple = 0xC4;
    public const byte WriteMultiple = 0xC5;
    public const byte SetMultipleMode = 0xC6;
    public const byte StandbyImmediate = 0xE0;
    public const byte IdleImmediate = 0xE1;
    public const byte Standby = 0xE2;
    public const byte Idle = 0xE3;
    public const byte CheckPowerMode = 0xE5;
    public const byte FlushCache = 0xE7;
    public const byte FlushCacheExt = 0xEA;
    public const byte IdentifyDevice = 0xEC;
    public const byte SetFeatures = 0xEF;
    public const byte ReadNativeMaxAddress = 0xF8;
}

/// <summary>Bus-master IDE register bits (SFF-8038i), per channel.</summary>
public static class BusMasterBits
{
    /// <summary>Command register: start/stop bus master.</summary>
    public const byte Start = 0x01;
    /// <summary>Command register: 1 = the bus master writes to memory (a disk read).</summary>
    public const byte ToMemory = 0x08;
    /// <summary>Status register: bus master active.</summary>
    public const byte Active = 0x01;
    /// <summary>Status register: the transfer failed (write 1 to clear).</summary>
    public const byte Error = 0x02;
    /// <summary>Status register: the drive raised INTRQ (write 1 to clear).</summary>
    public const byte Interrupt = 0x04;
    /// <summary>Status register: drive 0 / drive 1 DMA capable (read/write, for the BIOS).</summary>
    public const byte DmaCapableMask = 0x60;
}
