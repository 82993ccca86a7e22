namespace Csvmm.TinyGuests;

/// <summary>
/// Every fixed address of the disk guests: where the pieces sit in the BIOS image (low alias) and what the guest
/// keeps in RAM. RAM below 0xA0000 holds tables and driver state; data buffers start at 1 MiB; BARs the guest has
/// to assign itself go to <see cref="MmioBarBase"/> (memory) and <see cref="IoBarBase"/> (I/O).
/// </summary>
public static class GuestLayout
{
    // ---- the image (low alias addresses) -----------------------------------------------------------
    public const uint Entry16 = 0xF0000;
    public const uint GdtAddress = 0xF0100;
    public const uint GdtPointer = 0xF0180;
    public const uint Code32 = 0xF0200;
    public const uint Code64 = 0xF1000;
    public const uint Strings = 0xFC000;
    public const int StringsSize = 0x2000;
    public const uint OpBlock = 0xFE000;
    public const int OpBlockSize = 0x1F00;

    // ---- the operation block ------------------------------------------------------------------------
    public const uint Magic = 0x4753_4B44; // "DKSG" little-endian: 'D' 'K' 'S' 'G'
    public const int HdrMagic = 0, HdrInterface = 4, HdrFlags = 8, HdrChunk = 12, HdrPioMultiple = 16, HdrOpCount = 20, HdrTimeout = 24, HdrPollPauses = 32;
    public const int OpHeaderSize = 64;
    public const int OpSize = 32;
    public const int OpKind = 0, OpRequestSectors = 4, OpQueueDepth = 6, OpLba = 8, OpCount = 16, OpSeed = 24;
    public const int MaxOps = (OpBlockSize - OpHeaderSize) / OpSize;
    public const uint FlagForceLba48 = 1, FlagSecondary = 2, FlagSlave = 4;

    // ---- segments -----------------------------------------------------------------------------------
    public const ushort Code32Selector = 0x08, DataSelector = 0x10, Code64Selector = 0x18, UserDataSelector = 0x20, UserCode64Selector = 0x28;

    // ---- RAM ----------------------------------------------------------------------------------------
    public const uint KernelStack = 0x7000;
    public const uint UserStack = 0xF000;
    public const uint Pml4 = 0x10000, Pdpt = 0x11000, PageDirectories = 0x12000; // 4 PDs: 0-4 GiB in 2 MiB pages
    public const uint Vars = 0x18000;
    public const uint VirtqDesc = 0x20000, VirtqAvail = 0x21000, VirtqUsed = 0x22000;
    public const uint VirtioHeaders = 0x24000, VirtioStatus = 0x25000;
    public const uint PrdTable = 0x26000;
    public const uint IdentifyBuffer = 0x27000;
    public const uint DataBuffer = 0x100000;
    public const ulong DataBufferBytes = 32UL << 20;

    /// <summary>The guest needs at least this much RAM (data buffer end, rounded up).</summary>
    public const ulong MinimumRamBytes = 64UL << 20;

    // ---- limits -------------------------------------------------------------------------------------
    public const int MaxChunkSectors = 256;
    public const int MaxBenchRequestSectors = 65535;
    public const int MaxQueueDepth = 64;
    public const int MaxVirtqSize = 256;

    // ---- BARs the guest assigns when the firmware left them at 0 -------------------------------------
    public const uint MmioBarBase = 0xE000_0000;
    public const uint IoBarBase = 0xC000;
}
