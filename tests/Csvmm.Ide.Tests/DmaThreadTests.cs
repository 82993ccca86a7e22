using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

/// <summary>
/// Bus-master DMA on the channel's own thread (as the machine runs it): the register write that starts a transfer
/// returns before the disk is touched, the drive is busy until the transfer ends with its interrupt, commands written
/// meanwhile are ignored, and a reset drops a transfer in flight. A gated disk holds each request until released.
/// </summary>
public sealed class DmaThreadTests : IDisposable
{
    private const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;
    private readonly GuestMemory _memory = new();
    private readonly GatedDisk _disk = new(new FakeDisk(256));
    private readonly RecordingIrq _irq = new();
    private readonly IdeChannel _channel;

    public DmaThreadTests()
    {
        _memory.AddRegion(new GuestAddress(0), 0x40000, "ram");
        _channel = new IdeChannel(new LockedIrq(_irq), new IdeDrive(_disk), null, _memory, ioThread: true);
    }

    public void Dispose()
    {
        _disk.Open();
        _channel.Dispose();
        _memory.Dispose();
    }

    /// <summary>A disk whose vectored requests wait at a gate; counts requests that reached it.</summary>
    private sealed class GatedDisk(FakeDisk inner) : IDiskBackend
    {
        private readonly ManualResetEventSlim _gate = new(false);
        private int _arrived;
        public FakeDisk Inner => inner;
        public int Arrived => Volatile.Read(ref _arrived);
        public int? ThreadId;
        public void Open() => _gate.Set();
        public void Close() => _gate.Reset();
        public ulong SizeBytes => inner.SizeBytes;
        public bool ReadOnly => inner.ReadOnly;
        public int LogicalBlockSize => 512;
        public string Describe => "gated";
        public DiskCounters Counters => inner.Counters;
        public DiskIoResult Read(ulong offset, Span<byte> destination) { Arrive(); return inner.Read(offset, destination); }
        public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source) { Arrive(); return inner.Write(offset, source); }
        public DiskIoResult ReadVectored(ulong offset, ReadOnlySpan<IoVector> buffers) { Arrive(); return inner.ReadVectored(offset, buffers); }
        public DiskIoResult WriteVectored(ulong offset, ReadOnlySpan<IoVector> buffers) { Arrive(); return inner.WriteVectored(offset, buffers); }
        private void Arrive()
        {
            ThreadId = Environment.CurrentManagedThreadId;
            Interlocked.Increment(ref _arrived);
            if (!_gate.Wait(TimeSpan.FromSeconds(20))) throw new TimeoutException("the test never opened the gate");
        }
        public DiskIoResult Flush() => inner.Flush();
        public DiskIoResult Discard(ulong offset, ulong length) => inner.Discard(offset, length);
        public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap) => inner.WriteZeroes(offset, length, unmap);
        public void Dispose() { }
    }

    /// <summary>The recording IRQ line, safe to read from the test thread while the DMA thread sets it.</summary>
    private sealed class LockedIrq(RecordingIrq inner) : Csvmm.Devices.IIrqLine
    {
        public void Set(bool level) { lock (inner) inner.Set(level); }
    }

    private bool IrqLevel { get { lock (_irq) return _irq.Level; } }

    private void Out(int port, byte v) => _channel.CommandBlock.Write((ulong)port, [v]);

    private byte In(int port)
    {
        Span<byte> b = stackalloc byte[1];
        _channel.CommandBlock.Read((ulong)port, b);
        return b[0];
    }

    private byte AltStatus()
    {
        Span<byte> b = stackalloc byte[1];
        _channel.ControlBlock.Read(0, b);
        return b[0];
    }

    private byte BmStatus()
    {
        Span<byte> b = stackalloc byte[1];
        _channel.BusMaster!.Read(2, b);
        return b[0];
    }

    private void ReadDma(uint lba, byte count, uint buffer)
    {
        Span<byte> e = _memory.GetSpan(new GuestAddress(0x1000), 8);
        BinaryPrimitives.WriteUInt32LittleEndian(e, buffer);
        BinaryPrimitives.WriteUInt16LittleEndian(e[4..], (ushort)(count * 512));
        BinaryPrimitives.WriteUInt16LittleEndian(e[6..], 0x8000);
        _channel.BusMaster!.Write(4, [0x00, 0x10, 0, 0]);
        _channel.BusMaster!.Write(0, [BusMasterBits.ToMemory]);
        Out(6, 0xE0);
        Out(2, count);
        Out(3, (byte)lba);
        Out(4, (byte)(lba >> 8));
        Out(5, (byte)(lba >> 16));
        Out(7, AtaCommand.ReadDma);
        _channel.BusMaster!.Write(0, [BusMasterBits.ToMemory | BusMasterBits.Start]);
    }

    private void WaitFor(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            Thread.Sleep(1);
        }
    }

    [Fact]
    public void The_starting_write_returns_at_once_and_the_transfer_completes_on_the_dma_thread()
    {
        ReadDma(lba: 5, count: 2, buffer: 0x8000);
        WaitFor(() => _disk.Arrived == 1, "the request");
        // The vCPU is free while the disk works: busy drive, active bus master, no interrupt yet.
        Assert.Equal(AtaStatus.Bsy, AltStatus() & AtaStatus.Bsy);
        Assert.Equal(BusMasterBits.Active, BmStatus() & 0x07);
        Assert.False(IrqLevel);
        Assert.NotEqual(Environment.CurrentManagedThreadId, _disk.ThreadId);

        _disk.Open();
        WaitFor(() => IrqLevel, "the interrupt");
        Assert.Equal(BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready, In(7));
        Assert.Equal(_disk.Inner.Data.AsSpan(5 * 512, 1024).ToArray(), _memory.GetSpan(new GuestAddress(0x8000), 1024).ToArray());
    }

    [Fact]
    public void Task_file_writes_while_the_drive_is_busy_are_ignored()
    {
        ReadDma(lba: 1, count: 1, buffer: 0x8000);
        WaitFor(() => _disk.Arrived == 1, "the request");
        Out(3, 0x77);                    // the LBA low register of the busy drive
        Out(7, AtaCommand.IdentifyDevice);
        Assert.Equal(AtaStatus.Bsy, AltStatus() & AtaStatus.Bsy);
        _disk.Open();
        WaitFor(() => IrqLevel, "the interrupt");
        Assert.Equal(Ready, In(7));
        Assert.Equal(1, In(3));          // the address registers report the transfer's last sector, not 0x77
        Assert.Equal(1, _disk.Arrived);
    }

    [Fact]
    public void A_software_reset_drops_the_transfer_in_flight_and_the_drive_stays_busy_until_its_request_ends()
    {
        ReadDma(lba: 3, count: 1, buffer: 0x8000);
        WaitFor(() => _disk.Arrived == 1, "the request");
        _channel.ControlBlock.Write(0, [AtaControl.Srst]);
        _channel.ControlBlock.Write(0, [0]);
        // The request still owns the channel's buffers: busy, and commands are ignored, until it ends.
        Assert.Equal(AtaStatus.Bsy, AltStatus());
        _disk.Open();
        WaitFor(() => AltStatus() == Ready, "the drive to be ready");
        Assert.False(IrqLevel);                                    // the dropped transfer does not complete
        Assert.Equal(0, BmStatus() & BusMasterBits.Interrupt);
        ReadDma(lba: 9, count: 1, buffer: 0xA000);                 // and the drive works again
        WaitFor(() => IrqLevel, "the second transfer");
        Assert.Equal(Ready, In(7));
        Assert.Equal(_disk.Inner.Data.AsSpan(9 * 512, 512).ToArray(), _memory.GetSpan(new GuestAddress(0xA000), 512).ToArray());
    }

    private ushort InData()
    {
        Span<byte> b = stackalloc byte[2];
        _channel.CommandBlock.Read(0, b);
        return (ushort)(b[0] | (b[1] << 8));
    }

    private void Lba28(uint lba, byte count)
    {
        Out(6, 0xE0);
        Out(2, count);
        Out(3, (byte)lba);
        Out(4, (byte)(lba >> 8));
        Out(5, (byte)(lba >> 16));
    }

    [Fact]
    public void Pio_reads_and_writes_wait_for_the_disk_on_the_io_thread()
    {
        Lba28(4, 1);
        Out(7, AtaCommand.ReadSectors);
        WaitFor(() => _disk.Arrived == 1, "the read request");
        Assert.Equal(AtaStatus.Bsy, AltStatus());        // the vCPU is back; the drive is busy, no data yet
        Assert.False(IrqLevel);
        Assert.NotEqual(Environment.CurrentManagedThreadId, _disk.ThreadId);
        _disk.Open();
        WaitFor(() => IrqLevel, "the read block");
        Assert.Equal(Ready | AtaStatus.Drq, AltStatus());
        var block = new byte[512];
        for (int i = 0; i < 512; i += 2) { ushort w = InData(); block[i] = (byte)w; block[i + 1] = (byte)(w >> 8); }
        Assert.Equal(_disk.Inner.Data.AsSpan(4 * 512, 512).ToArray(), block);
        Assert.Equal(Ready, In(7));

        Lba28(20, 1);
        Out(7, AtaCommand.WriteSectors);
        Assert.Equal(Ready | AtaStatus.Drq, AltStatus());   // PIO out: the host sends the first block at once
        for (int i = 0; i < 256; i++) _channel.CommandBlock.Write(0, [0x5A, 0xA5]);
        WaitFor(() => IrqLevel, "the write");
        Assert.Equal(Ready, In(7));
        Assert.All(_disk.Inner.Data.AsSpan(20 * 512, 512).ToArray().Chunk(2), p => Assert.Equal(new byte[] { 0x5A, 0xA5 }, p));

        Out(7, AtaCommand.FlushCache);
        WaitFor(() => IrqLevel, "the flush");
        Assert.Equal(Ready, In(7));
        Assert.Equal(1, _disk.Inner.Flushes);
    }

    [Fact]
    public async Task Dispose_waits_for_the_request_in_flight()
    {
        ReadDma(lba: 2, count: 1, buffer: 0x8000);
        WaitFor(() => _disk.Arrived == 1, "the request");
        var disposing = Task.Run(_channel.Dispose);
        Assert.NotSame(disposing, await Task.WhenAny(disposing, Task.Delay(200)));
        _disk.Open();
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
