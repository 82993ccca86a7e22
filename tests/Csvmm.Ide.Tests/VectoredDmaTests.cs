using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Devices.Pci;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

/// <summary>
/// Bus-master DMA as one vectored disk request per command: the PRD table is validated and collected first, then a
/// single ReadVectored/WriteVectored moves the data. The guest-visible outcomes are those of a bus master that works
/// through its table entry by entry: entries before a bad one (or before a table that ends too early) are transferred,
/// then the bus master reports Error and the command ends with ABRT.
/// </summary>
public sealed class VectoredDmaTests : DmaRig
{
    private const uint Outside = 0x7FFFF000; // no region there
    private const uint Rom = 0xF8000;

    /// <summary>Issues an LBA28 DMA command for <paramref name="count"/> sectors (0 = 256) and starts the bus master.</summary>
    private void Dma(byte command, uint lba, byte count, bool toMemory)
    {
        Issue(command, lba, count, toMemory);
        Start(toMemory);
    }

    private void Read(uint lba, byte count) => Dma(AtaCommand.ReadDma, lba, count, toMemory: true);

    private void Write(uint lba, byte count) => Dma(AtaCommand.WriteDma, lba, count, toMemory: false);

    private uint ReportedLba() => In(3) | ((uint)In(4) << 8) | ((uint)In(5) << 16) | ((uint)(In(6) & 0x0F) << 24);

    private byte[] Memory(uint address, int length) => _memory.GetSpan(new GuestAddress(address), length).ToArray();

    private byte[] DiskBytes(uint sector, int length) => _disk.Data.AsSpan((int)sector * 512, length).ToArray();

    private void AssertDone()
    {
        Assert.True(_irq.Level);
        Assert.Equal(BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready, In(7));
    }

    private void AssertTableError(uint firstNotTransferred)
    {
        Assert.True(_irq.Level);
        Assert.Equal(BusMasterBits.Error | BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready | AtaStatus.Err, In(7));
        Assert.Equal(AtaError.Abrt, In(1));
        Assert.Equal(firstNotTransferred, ReportedLba());
    }

    // ---- one vectored request per command -----------------------------------------------------------------

    [Fact]
    public void A_multi_entry_read_is_one_vectored_request()
    {
        SetPrd((0x2000, 512, false), (0x8000, 1024, false), (0x3000, 512, true));
        Read(7, 4);
        AssertDone();
        Assert.Equal((1, 0, 0), (_disk.VectoredReads, _disk.Reads, _disk.VectoredWrites));
        Assert.Equal((3, 2048UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(7, 512), Memory(0x2000, 512));
        Assert.Equal(DiskBytes(8, 1024), Memory(0x8000, 1024));
        Assert.Equal(DiskBytes(10, 512), Memory(0x3000, 512));
        Assert.Equal(10u, ReportedLba()); // the last sector transferred
    }

    [Fact]
    public void A_multi_entry_write_is_one_vectored_request()
    {
        _memory.GetSpan(new GuestAddress(0x4000), 512).Fill(0xAB);
        _memory.GetSpan(new GuestAddress(0x9000), 1024).Fill(0xCD);
        _memory.GetSpan(new GuestAddress(0x5000), 512).Fill(0xEF);
        SetPrd((0x4000, 512, false), (0x9000, 1024, false), (0x5000, 512, true));
        Write(100, 4);
        AssertDone();
        Assert.Equal((1, 0, 0), (_disk.VectoredWrites, _disk.Writes, _disk.VectoredReads));
        Assert.Equal((3, 2048UL), _disk.LastVectored);
        Assert.All(DiskBytes(100, 512), b => Assert.Equal(0xAB, b));
        Assert.All(DiskBytes(101, 1024), b => Assert.Equal(0xCD, b));
        Assert.All(DiskBytes(103, 512), b => Assert.Equal(0xEF, b));
    }

    [Fact]
    public void Entries_that_continue_each_other_become_one_buffer()
    {
        SetPrd((0x2000, 512, false), (0x2200, 512, false), (0x6000, 512, false), (0x6200, 512, true));
        Read(0, 4);
        AssertDone();
        Assert.Equal((2, 2048UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(0, 1024), Memory(0x2000, 1024));
        Assert.Equal(DiskBytes(2, 1024), Memory(0x6000, 1024));
    }

    [Fact]
    public void A_zero_byte_count_means_64_KiB()
    {
        SetPrd((0x10000, 0, false), (0x30000, 0, true));
        Read(0, 0); // 256 sectors: the whole disk, 128 KiB
        AssertDone();
        Assert.Equal((2, 131072UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(0, 65536), Memory(0x10000, 65536));
        Assert.Equal(DiskBytes(128, 65536), Memory(0x30000, 65536));
    }

    [Fact]
    public void Bit_zero_of_the_address_and_the_byte_count_is_ignored()
    {
        SetPrd((0x2001, 513, true));
        Read(3, 1);
        AssertDone();
        Assert.Equal((1, 512UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(3, 512), Memory(0x2000, 512));
    }

    // ---- PRDs longer or shorter than the transfer ----------------------------------------------------------

    [Fact]
    public void Entries_longer_than_the_transfer_are_trimmed_and_the_rest_of_the_table_is_not_read()
    {
        _memory.GetSpan(new GuestAddress(0x2000), 0x2000).Fill(0x5A);
        // The second entry is never reached (the transfer is covered), so its bad address and missing EOT do not matter.
        SetPrd((0x2000, 4096, false), (Outside, 512, false));
        Read(5, 2);
        AssertDone();
        Assert.Equal((1, 1024UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(5, 1024), Memory(0x2000, 1024));
        Assert.All(Memory(0x2400, 0x1C00), b => Assert.Equal(0x5A, b)); // past the transfer: untouched
    }

    [Fact]
    public void A_table_shorter_than_a_read_transfers_what_it_covers_then_errors()
    {
        _memory.GetSpan(new GuestAddress(0x3000), 512).Fill(0x5A);
        SetPrd((0x2000, 512, false), (0x3000, 256, true));
        Read(20, 3);
        AssertTableError(firstNotTransferred: 21); // sector 21 only half arrived
        Assert.Equal((2, 768UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(20, 768), Memory(0x2000, 512).Concat(Memory(0x3000, 256)).ToArray());
        Assert.All(Memory(0x3100, 256), b => Assert.Equal(0x5A, b));
    }

    [Fact]
    public void A_table_shorter_than_a_write_writes_what_it_covers_then_errors()
    {
        _memory.GetSpan(new GuestAddress(0x4000), 1024).Fill(0xAB);
        byte[] after = DiskBytes(42, 512);
        SetPrd((0x4000, 1024, true));
        Write(40, 3);
        AssertTableError(firstNotTransferred: 42);
        Assert.All(DiskBytes(40, 1024), b => Assert.Equal(0xAB, b));
        Assert.Equal(after, DiskBytes(42, 512));
    }

    // ---- bad entries ---------------------------------------------------------------------------------------

    [Theory]
    [InlineData(Outside)]  // outside RAM
    [InlineData(0x3FF00u)] // runs off the end of RAM
    [InlineData(Rom)]      // a disk read into ROM
    public void A_bad_entry_in_the_middle_of_a_read_keeps_the_valid_prefix_and_nothing_after(uint bad)
    {
        byte[] rom = Memory(Rom, 512);
        _memory.GetSpan(new GuestAddress(0x3000), 512).Fill(0x5A);
        SetPrd((0x2000, 512, false), (bad, 512, false), (0x3000, 512, true));
        Read(9, 3);
        AssertTableError(firstNotTransferred: 10);
        Assert.Equal((1, 1, 512UL), (_disk.VectoredReads, _disk.LastVectored.Buffers, _disk.LastVectored.Bytes));
        Assert.Equal(DiskBytes(9, 512), Memory(0x2000, 512));
        Assert.All(Memory(0x3000, 512), b => Assert.Equal(0x5A, b));
        Assert.Equal(rom, Memory(Rom, 512));
    }

    [Fact]
    public void A_bad_entry_in_the_middle_of_a_write_writes_the_valid_prefix_only()
    {
        _memory.GetSpan(new GuestAddress(0x4000), 512).Fill(0xAB);
        _memory.GetSpan(new GuestAddress(0x5000), 512).Fill(0xCD);
        byte[] rest = DiskBytes(61, 1024);
        SetPrd((0x4000, 512, false), (Outside, 512, false), (0x5000, 512, true));
        Write(60, 3);
        AssertTableError(firstNotTransferred: 61);
        Assert.All(DiskBytes(60, 512), b => Assert.Equal(0xAB, b));
        Assert.Equal(rest, DiskBytes(61, 1024));
    }

    [Fact]
    public void A_write_may_gather_from_rom()
    {
        byte[] rom = Memory(Rom, 512);
        SetPrd((Rom, 512, true));
        Write(1, 1);
        AssertDone();
        Assert.Equal(rom, DiskBytes(1, 512));
    }

    [Fact]
    public void A_bad_first_entry_or_a_table_outside_ram_never_reaches_the_disk()
    {
        SetPrd((Outside, 512, true));
        Read(4, 1);
        AssertTableError(firstNotTransferred: 4);
        Assert.Equal(0, _disk.VectoredReads);

        _channel.BusMaster!.Write(2, [BusMasterBits.Interrupt | BusMasterBits.Error]);
        PointAt(0x7FFF0000);
        Write(4, 1);
        AssertTableError(firstNotTransferred: 4);
        Assert.Equal(0, _disk.VectoredWrites);
    }

    // ---- the 8192-entry limit ------------------------------------------------------------------------------

    private void SetTinyEntries(int entries, bool lastHasEot)
    {
        var prd = new (uint, int, bool)[entries];
        for (int i = 0; i < entries; i++) prd[i] = ((uint)(0x30000 + 4 * i), 2, lastHasEot && i == entries - 1); // 2 bytes each, not contiguous
        SetPrdAt(0x20000, prd); // 8192 entries fill 64 KiB: 0x20000-0x2FFFF
    }

    [Fact]
    public void A_full_table_without_eot_that_covers_the_transfer_succeeds()
    {
        SetTinyEntries(8192, lastHasEot: false);
        Read(0, 32); // 16 KiB = 8192 × 2 bytes
        AssertDone();
        Assert.Equal((8192, 16384UL), _disk.LastVectored);
        Assert.Equal(DiskBytes(0, 2), Memory(0x30000, 2));
        Assert.Equal(DiskBytes(31, 512)[^2..], Memory(0x30000 + 4 * 8191, 2));
    }

    [Fact]
    public void The_table_ends_after_8192_entries()
    {
        SetTinyEntries(8192, lastHasEot: false);
        Read(0, 33);
        AssertTableError(firstNotTransferred: 32);
        Assert.Equal((8192, 16384UL), _disk.LastVectored);
    }

    // ---- backend errors ------------------------------------------------------------------------------------

    [Theory]
    [InlineData(true, AtaError.Unc)]
    [InlineData(false, AtaError.Abrt)]
    public void A_backend_failure_is_unc_for_reads_and_abrt_for_writes_without_a_bus_master_error(bool read, byte expected)
    {
        _disk.FailWith = DiskIoResult.Host(5);
        SetPrd((0x2000, 512, false), (0x3000, 512, true));
        if (read) Read(12, 2); else Write(12, 2);
        Assert.True(_irq.Level);
        Assert.Equal(BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready | AtaStatus.Err, In(7));
        Assert.Equal(expected, In(1));
        Assert.Equal(12u, ReportedLba()); // the vectored request does not say where: the command's first sector
        Assert.Equal(1, read ? _disk.VectoredReads : _disk.VectoredWrites);
    }

    [Fact]
    public void A_backend_failure_on_the_prefix_wins_over_a_bad_entry_after_it()
    {
        _disk.FailWith = DiskIoResult.Host(5);
        SetPrd((0x2000, 512, false), (Outside, 512, true));
        Read(12, 2);
        Assert.Equal(BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(AtaError.Unc, In(1));
    }

    [Fact]
    public void Out_of_range_from_the_backend_is_idnf_and_a_read_only_refusal_is_abrt()
    {
        SetPrd((0x2000, 512, true));
        _disk.FailWith = DiskIoResult.OutOfRange;
        Read(1, 1);
        Assert.Equal(AtaError.Idnf, In(1));
        _disk.FailWith = DiskIoResult.ReadOnlyDisk;
        Write(1, 1);
        Assert.Equal(AtaError.Abrt, In(1));
        Assert.Equal(0, BmStatus() & BusMasterBits.Error);
    }

    // ---- bus master enable and allocation ------------------------------------------------------------------

    private static void SetBusMaster(PiixIde ide, bool enable)
    {
        uint command = PciConfigSpace.CommandIoSpace | (enable ? PciConfigSpace.CommandBusMaster : 0u);
        ide.WriteConfig(PciConfigSpace.CommandOffset, [(byte)command, (byte)(command >> 8)]);
    }

    [Fact]
    public void With_bus_mastering_disabled_nothing_moves_until_it_is_enabled()
    {
        var ide = new PiixIde(_channel, null);
        SetBusMaster(ide, false);
        SetPrd((0x2000, 512, false), (0x8000, 512, true));
        Read(2, 2);
        Assert.False(_irq.Level);
        Assert.Equal(BusMasterBits.Active, BmStatus() & 0x07);
        Assert.Equal(0, _disk.VectoredReads);
        SetBusMaster(ide, true);
        AssertDone();
        Assert.Equal((1, 2, 1024UL), (_disk.VectoredReads, _disk.LastVectored.Buffers, _disk.LastVectored.Bytes));
        Assert.Equal(DiskBytes(3, 512), Memory(0x8000, 512));
    }

    [Fact]
    public void A_dma_command_allocates_nothing()
    {
        _memory.GetSpan(new GuestAddress(0x4000), 512).Fill(0xAB);
        SetPrd((0x2000, 512, false), (0x8000, 1024, false), (0x4000, 512, true));
        for (int i = 0; i < 20; i++) // warm up (tiering, statics)
        {
            Read(1, 4);
            In(7);
            Write(50, 4);
            In(7);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            Read(1, 4);
            In(7);
            Write(50, 4);
            In(7);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal((120, 120), (_disk.VectoredReads, _disk.VectoredWrites));
        Assert.Equal(Ready, In(7));
    }
}
