using System.Buffers.Binary;
using Csvmm.Block;
using static Csvmm.Virtio.Virtq;
using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Virtio.Tests;

/// <summary>virtio-blk end to end: driver-built rings in fake guest RAM, the PCI transport, the I/O thread, a real image file.</summary>
public sealed class VirtioBlkTests : IDisposable
{
    private const int DiskSize = 1 << 20;
    private const ulong Sectors = DiskSize / 512;
    private BlkRig _rig;

    public VirtioBlkTests()
    {
        _rig = new BlkRig(DiskSize);
        Assert.Equal(VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk | VirtioStatus.DriverOk, _rig.Init());
    }

    public void Dispose() => _rig.Dispose();

    private void Reopen(bool readOnly = false, VirtioBlkOptions? options = null, DiskCacheMode cache = DiskCacheMode.Writeback)
    {
        _rig.Dispose();
        _rig = new BlkRig(DiskSize, readOnly, options: options, cache: cache);
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
    }

    private byte[] Expected(long offset, int length) => _rig.Initial.AsSpan((int)offset, length).ToArray();

    [Theory]
    [InlineData(0, 1, 1)]
    [InlineData(7, 8, 1)]
    [InlineData(100, 64, 4)]
    [InlineData(Sectors - 3, 3, 3)]
    public void ReadReturnsTheFileBytes(ulong sector, int count, int segments)
    {
        var (status, data, used) = _rig.ReadSectors(sector, count, segments);
        Assert.Equal(StatusOk, status);
        Assert.Equal(Expected((long)sector * 512, count * 512), data);
        Assert.Equal((uint)(count * 512 + 1), used);
        Assert.Equal(count * 512, _rig.Blk.Counters.ReadBytes);
    }

    [Fact]
    public void UnevenSegmentsAndAStatusByteSharingTheLastBufferWork()
    {
        // header | 100 + 412 + 1024 data bytes | last buffer holds 512 data bytes and the status byte.
        ulong h = _rig.Header(TypeIn, 20);
        ulong a = _rig.Alloc(100), b = _rig.Alloc(412), c = _rig.Alloc(1024), tail = _rig.Alloc(513);
        uint used = _rig.Submit(new(h, 16, false), new(a, 100, true), new(b, 412, true), new(c, 1024, true), new(tail, 513, true));
        Assert.Equal(2049u, used);
        Assert.Equal(StatusOk, _rig.Mem(tail + 512, 1)[0]);
        byte[] got = [.. _rig.Mem(a, 100), .. _rig.Mem(b, 412), .. _rig.Mem(c, 1024), .. _rig.Mem(tail, 512)];
        Assert.Equal(Expected(20 * 512, 2048), got);

        // The header split over two descriptors, data in the same buffer as the rest of it.
        ulong h2 = _rig.Alloc(8);
        ulong rest = _rig.Alloc(8 + 1024);
        BinaryPrimitives.WriteUInt32LittleEndian(_rig.Mem(h2, 4), TypeOut);
        BinaryPrimitives.WriteUInt64LittleEndian(_rig.Mem(rest, 8), 40);
        byte[] payload = ScratchImage.Pattern(777, 1024);
        payload.CopyTo(_rig.Mem(rest + 8, 1024));
        ulong s = _rig.StatusByte();
        Assert.Equal(1u, _rig.Submit(new(h2, 8, false), new(rest, 8 + 1024, false), new(s, 1, true)));
        Assert.Equal(StatusOk, _rig.Mem(s, 1)[0]);
        Assert.Equal(payload, _rig.FileContents.AsSpan(40 * 512, 1024).ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public void WriteLandsInTheFileAndNothingElseMoves(int segments)
    {
        byte[] data = ScratchImage.Pattern(99_999, 5 * 1024);
        var (status, used) = _rig.WriteSectors(33, data, segments);
        Assert.Equal(StatusOk, status);
        Assert.Equal(1u, used);
        byte[] expected = (byte[])_rig.Initial.Clone();
        data.CopyTo(expected, 33 * 512);
        Assert.Equal(expected, _rig.FileContents);
        Assert.Equal(data.Length, _rig.Blk.Counters.WrittenBytes);

        var back = _rig.ReadSectors(33, 10, 3);
        Assert.Equal(data, back.Data);
    }

    [Fact]
    public void IndirectRequestsWork()
    {
        var (status, data, used) = _rig.ReadSectors(50, 16, segments: 8, indirect: true);
        Assert.Equal(StatusOk, status);
        Assert.Equal(Expected(50 * 512, 16 * 512), data);
        Assert.Equal(16u * 512 + 1, used);
    }

    [Fact]
    public void FlushSucceeds()
    {
        Assert.Equal((StatusOk, 1u), _rig.Simple(TypeFlush));
        Assert.Equal(1, _rig.Blk.Counters.Flushes);
        Assert.Equal(1, _rig.Disk.Counters.Flushes);
    }

    [Fact]
    public void GetIdReturnsTheSerialPaddedTo20Bytes()
    {
        ulong id = _rig.Alloc(20);
        _rig.Mem(id, 20).Fill(0xAA);
        ulong s = _rig.StatusByte();
        uint used = _rig.Submit(new(_rig.Header(TypeGetId, 0), 16, false), new(id, 20, true), new(s, 1, true));
        Assert.Equal(21u, used);
        Assert.Equal(StatusOk, _rig.Mem(s, 1)[0]);
        byte[] expected = new byte[20];
        "csvmm-test-serial"u8.CopyTo(expected);
        Assert.Equal(expected, _rig.Mem(id, 20).ToArray());

        // A short buffer gets what fits.
        ulong small = _rig.Alloc(5);
        ulong s2 = _rig.StatusByte();
        Assert.Equal(6u, _rig.Submit(new(_rig.Header(TypeGetId, 0), 16, false), new(small, 5, true), new(s2, 1, true)));
        Assert.Equal("csvmm"u8.ToArray(), _rig.Mem(small, 5).ToArray());
    }

    [Fact]
    public void LongSerialIsCutAt20Bytes()
    {
        Reopen(options: new VirtioBlkOptions { Serial = "0123456789abcdefghijKLMNOP" });
        ulong id = _rig.Alloc(20);
        ulong s = _rig.StatusByte();
        Assert.Equal(21u, _rig.Submit(new(_rig.Header(TypeGetId, 0), 16, false), new(id, 20, true), new(s, 1, true)));
        Assert.Equal("0123456789abcdefghij"u8.ToArray(), _rig.Mem(id, 20).ToArray());
    }

    [Fact]
    public void WriteZeroesZeroesTheRangesWithOrWithoutUnmap()
    {
        var (status, used) = _rig.Ranges(TypeWriteZeroes, (8, 16, 0), (100, 8, RangeFlagUnmap));
        Assert.Equal(StatusOk, status);
        Assert.Equal(1u, used);
        byte[] expected = (byte[])_rig.Initial.Clone();
        Array.Clear(expected, 8 * 512, 16 * 512);
        Array.Clear(expected, 100 * 512, 8 * 512);
        Assert.Equal(expected, _rig.FileContents);
        Assert.Equal(1, _rig.Blk.Counters.WriteZeroes);
    }

    [Fact]
    public void DiscardSucceedsAndLeavesTheRestAlone()
    {
        Assert.Equal((StatusOk, 1u), _rig.Ranges(TypeDiscard, (64, 64, 0)));
        Assert.Equal(1, _rig.Blk.Counters.Discards);
        var file = _rig.FileContents;
        Assert.Equal(Expected(0, 64 * 512), file.AsSpan(0, 64 * 512).ToArray());
        Assert.Equal(Expected(128 * 512, DiskSize - 128 * 512), file.AsSpan(128 * 512).ToArray());
    }

    [Theory]
    [InlineData(TypeDiscard, 0ul, 8u, RangeFlagUnmap, StatusUnsupp)] // discard must not carry the unmap flag
    [InlineData(TypeWriteZeroes, 0ul, 8u, 2u, StatusUnsupp)]         // reserved flag
    [InlineData(TypeDiscard, Sectors - 4, 8u, 0u, StatusIoErr)]      // runs past the end
    [InlineData(TypeWriteZeroes, ulong.MaxValue, 1u, 0u, StatusIoErr)] // sector * 512 overflows
    [InlineData(TypeWriteZeroes, 0ul, 0x40_0000u, 0u, StatusIoErr)]  // more than max_write_zeroes_sectors
    public void BadRangesAreRefusedBeforeAnyIsCarriedOut(uint type, ulong sector, uint sectors, uint flags, byte expected)
    {
        // A good range first: it must not be carried out when a later one is bad.
        var (status, _) = _rig.Ranges(type, (0, 8, 0), (sector, sectors, flags));
        Assert.Equal(expected, status);
        Assert.Equal(_rig.Initial, _rig.FileContents);
    }

    [Fact]
    public void TooManyRangesOrAPartialRangeIsAnError()
    {
        var many = Enumerable.Range(0, 33).Select(i => ((ulong)i * 8, 8u, 0u)).ToArray();
        Assert.Equal(StatusIoErr, _rig.Ranges(TypeWriteZeroes, many).Status);
        // 20 payload bytes: not a whole number of ranges.
        ulong payload = _rig.Alloc(20);
        ulong s = _rig.StatusByte();
        _rig.Submit(new(_rig.Header(TypeDiscard, 0), 16, false), new(payload, 20, false), new(s, 1, true));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        Assert.Equal(_rig.Initial, _rig.FileContents);
    }

    [Fact]
    public void ReadOnlyDiskOffersRoAndRefusesWritesLeavingTheFileUnchanged()
    {
        Reopen(readOnly: true);
        ulong f = _rig.DeviceFeatures();
        Assert.NotEqual(0ul, f & (1UL << FeatureRo));
        Assert.Equal(0ul, f & (1UL << FeatureDiscard | 1UL << FeatureWriteZeroes));
        Assert.Equal(StatusIoErr, _rig.WriteSectors(0, new byte[1024]).Status);
        Assert.Equal(StatusUnsupp, _rig.Ranges(TypeWriteZeroes, (0, 8, 0)).Status);
        Assert.Equal(StatusUnsupp, _rig.Ranges(TypeDiscard, (0, 8, 0)).Status);
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 2).Status);
        Assert.Equal(StatusOk, _rig.Simple(TypeFlush).Status);
        Assert.Equal(_rig.Initial, _rig.FileContents);
    }

    [Theory]
    [InlineData(Sectors, 1)]             // starts at the end
    [InlineData(Sectors - 1, 2)]         // runs past the end
    [InlineData(ulong.MaxValue / 512 + 1, 1)] // byte offset overflows
    [InlineData(ulong.MaxValue, 1)]
    public void PastTheEndIsAnIoError(ulong sector, int count)
    {
        var (status, _, used) = _rig.ReadSectors(sector, count);
        Assert.Equal(StatusIoErr, status);
        Assert.Equal(1u, used);
        Assert.Equal(StatusIoErr, _rig.WriteSectors(sector, new byte[count * 512]).Status);
        Assert.Equal(_rig.Initial, _rig.FileContents);
        Assert.Equal(2, _rig.Blk.Counters.IoErrors);
    }

    [Fact]
    public void DataNotAMultipleOf512IsAnIoError()
    {
        ulong d = _rig.Alloc(700);
        ulong s = _rig.StatusByte();
        Assert.Equal(1u, _rig.Submit(new(_rig.Header(TypeIn, 0), 16, false), new(d, 700, true), new(s, 1, true)));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        s = _rig.StatusByte();
        _rig.Submit(new(_rig.Header(TypeOut, 0), 16, false), new(d, 700, false), new(s, 1, true));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        Assert.Equal(_rig.Initial, _rig.FileContents);
    }

    [Fact]
    public void ShortHeaderIsAnIoError()
    {
        ulong h = _rig.Header(TypeIn, 0);
        ulong s = _rig.StatusByte();
        Assert.Equal(1u, _rig.Submit(new(h, 8, false), new(s, 1, true)));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
    }

    [Fact]
    public void WrongDataDirectionIsAnIoError()
    {
        ulong d = _rig.Alloc(512);
        // IN with device-readable data.
        ulong s = _rig.StatusByte();
        _rig.Submit(new(_rig.Header(TypeIn, 0), 16, false), new(d, 512, false), new(s, 1, true));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        // OUT with device-writable data.
        s = _rig.StatusByte();
        _rig.Submit(new(_rig.Header(TypeOut, 0), 16, false), new(d, 512, true), new(s, 1, true));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        // FLUSH with data.
        s = _rig.StatusByte();
        _rig.Submit(new(_rig.Header(TypeFlush, 0), 16, false), new(d, 512, true), new(s, 1, true));
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        Assert.Equal(_rig.Initial, _rig.FileContents);
    }

    [Theory]
    [InlineData(2u)]
    [InlineData(TypeGetLifetime)]
    [InlineData(TypeSecureErase)]
    [InlineData(0xFFFF_FFFFu)]
    public void UnknownTypesAreUnsupported(uint type)
    {
        Assert.Equal((StatusUnsupp, 1u), _rig.Simple(type));
        Assert.Equal(1, _rig.Blk.Counters.Unsupported);
    }

    [Fact]
    public void ChainWithoutAStatusByteIsReturnedWithLengthZero()
    {
        ulong d = _rig.Alloc(512);
        _rig.Mem(d, 512).Fill(0x5A);
        Assert.Equal(0u, _rig.Submit(new(_rig.Header(TypeOut, 0), 16, false), new(d, 512, false)));
        Assert.Equal(1, _rig.Blk.Counters.Malformed);
        Assert.Equal(_rig.Initial, _rig.FileContents);
        // The queue keeps working.
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 1).Status);
    }

    [Fact]
    public void BrokenChainsAreReturnedWithLengthZero()
    {
        // A loop: descriptor 0 -> 1 -> 0.
        ulong h = _rig.Header(TypeIn, 0);
        ulong d = _rig.Alloc(512);
        _rig.WriteDesc(BlkRig.Desc, 0, h, 16, DescFlagNext, 1);
        _rig.WriteDesc(BlkRig.Desc, 1, d, 512, DescFlagNext | DescFlagWrite, 0);
        _rig.Publish(0);
        _rig.Kick();
        Assert.Equal((0u, 0u), _rig.WaitUsed()[0]);

        // A buffer outside guest RAM.
        _rig.WriteDesc(BlkRig.Desc, 0, h, 16, DescFlagNext, 1);
        _rig.WriteDesc(BlkRig.Desc, 1, 0xFFFF_0000_0000, 512, DescFlagWrite, 0);
        _rig.Publish(0);
        _rig.Kick();
        Assert.Equal((0u, 0u), _rig.WaitUsed()[0]);
        Assert.Equal(2, _rig.Blk.Counters.Malformed);
    }

    [Fact]
    public void OverLongChainGetsAnIoErrorWithoutTouchingTheDisk()
    {
        // An indirect table of 1 header + 1100 data + 1 status descriptors: more than the device takes.
        const int data = 1100;
        var bufs = new List<Buf> { new(_rig.Header(TypeIn, 0), 16, false) };
        for (int i = 0; i < data; i++) bufs.Add(new(_rig.Alloc(512), 512, true));
        ulong s = _rig.StatusByte();
        bufs.Add(new(s, 1, true));
        ushort head = _rig.IndirectChain([.. bufs]);
        _rig.Publish(head);
        _rig.Kick();
        Assert.Equal((head, 1u), _rig.WaitUsed()[0]);
        Assert.Equal(StatusIoErr, _rig.Mem(s, 1)[0]);
        Assert.Equal(0, _rig.Disk.Counters.Reads);
    }

    [Fact]
    public void ManyDataSegmentsGoThroughOneVectoredCall()
    {
        var (status, data, _) = _rig.ReadSectors(0, 254, segments: 254, indirect: true);
        Assert.Equal(StatusOk, status);
        Assert.Equal(Expected(0, 254 * 512), data);
        Assert.Equal(1, _rig.Disk.Counters.Reads); // one preadv, not 254 reads
    }

    [Fact]
    public void HugeRequestWithinLimitsWorks()
    {
        // 1 MiB in one request: the whole disk, 16 segments of 64 KiB.
        var (status, data, used) = _rig.ReadSectors(0, (int)Sectors, segments: 16);
        Assert.Equal(StatusOk, status);
        Assert.Equal(_rig.Initial, data);
        Assert.Equal((uint)DiskSize + 1, used);
    }

    [Fact]
    public void ABatchIsCompletedAndSignalledOnce()
    {
        Reopen();
        _rig.Status = 0;
        Assert.NotEqual(0, _rig.Init(VirtioFeatures.Version1) & VirtioStatus.DriverOk); // no EVENT_IDX
        var statuses = new List<ulong>();
        for (int i = 0; i < 8; i++)
        {
            ulong s = _rig.StatusByte();
            statuses.Add(s);
            _rig.Publish(_rig.Chain(new(_rig.Header(TypeIn, (ulong)i), 16, false), new(_rig.Alloc(512), 512, true), new(s, 1, true)));
        }
        _rig.Kick();
        var used = _rig.WaitUsed(8);
        Assert.All(used, u => Assert.Equal(513u, u.Len));
        Assert.All(statuses, s => Assert.Equal(StatusOk, _rig.Mem(s, 1)[0]));
        Assert.True(PciTransportTests.SpinUntil(() => _rig.Intx.Level));
        Assert.Equal(1, _rig.Intx.Raises);
        Assert.Equal(1, _rig.Blk.Counters.Notifications);
    }

    [Fact]
    public void NoInterruptFlagSuppressesNotificationsWithoutEventIdx()
    {
        _rig.Status = 0;
        _rig.Init(VirtioFeatures.Version1);
        BinaryPrimitives.WriteUInt16LittleEndian(_rig.Mem(BlkRig.Avail, 2), AvailFlagNoInterrupt);
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 1).Status);
        Thread.Sleep(20);
        Assert.Equal(0, _rig.Intx.Count);
    }

    [Fact]
    public void EventIdxSuppressesInterruptsTheDriverDidNotAskFor()
    {
        // Negotiated by default. First completion always notifies.
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 1).Status);
        Assert.True(PciTransportTests.SpinUntil(() => _rig.Blk.Counters.Notifications == 1));
        Assert.Equal(1, _rig.AvailEvent); // the device asked to be notified at the next buffer

        // The driver asks for an interrupt only after used index 10: requests 2..4 complete silently.
        for (int i = 0; i < 3; i++)
        {
            ulong s = _rig.StatusByte();
            _rig.Publish(_rig.Chain(new(_rig.Header(TypeIn, 0), 16, false), new(_rig.Alloc(512), 512, true), new(s, 1, true)),
                askForInterrupt: false);
            _rig.SetUsedEvent(10);
            _rig.Kick();
            _rig.WaitUsed();
        }
        Thread.Sleep(20);
        Assert.Equal(1, _rig.Blk.Counters.Notifications);
        Assert.Equal(4, _rig.AvailEvent);

        // Asking for the next one gets it.
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 1).Status);
        Assert.True(PciTransportTests.SpinUntil(() => _rig.Blk.Counters.Notifications == 2));
    }

    [Fact]
    public void BrokenAvailIndexSetsNeedsReset()
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_rig.Mem(BlkRig.Avail + 2, 2), 1000); // > queue size ahead
        _rig.Kick();
        Assert.True(PciTransportTests.SpinUntil(() => (_rig.Status & VirtioStatus.DeviceNeedsReset) != 0));
        Assert.True(PciTransportTests.SpinUntil(() => _rig.Intx.Level));
        Assert.Equal(VirtioPciDevice.IsrConfig, _rig.ReadIsr() & VirtioPciDevice.IsrConfig);
        _rig.Status = 0;
        Assert.Equal(0, _rig.Status);
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 1).Status);
    }

    [Fact]
    public void ThreadStopsOnResetAndDisposeWithoutHanging()
    {
        for (int i = 0; i < 20; i++)
        {
            Assert.True(_rig.Blk.IsRunning);
            _rig.Kick();
            _rig.Status = 0;
            Assert.False(_rig.Blk.IsRunning);
            Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        }
        Assert.Equal(StatusOk, _rig.ReadSectors(1, 1).Status);
        _rig.Pci.Dispose();
        Assert.False(_rig.Blk.IsRunning);
    }

    [Fact]
    public void ConcurrentDriverThreadsAllComplete()
    {
        // Two "vCPUs" kicking while the I/O thread drains: every request completes exactly once.
        const int n = 200;
        var statuses = new ulong[n];
        for (int i = 0; i < n; i++)
        {
            statuses[i] = _rig.StatusByte();
            ulong data = _rig.Alloc(512);
            ushort head = _rig.Chain(new(_rig.Header(TypeIn, (ulong)(i % 64)), 16, false), new(data, 512, true), new(statuses[i], 1, true));
            _rig.Publish(head, askForInterrupt: false);
            if (i % 16 == 15)
            {
                var t = new Thread(_rig.Kick);
                t.Start();
                _rig.Kick();
                t.Join();
                _rig.WaitUsed(16);
            }
        }
        _rig.Kick();
        _rig.WaitUsed(n % 16);
        Assert.All(statuses, s => Assert.Equal(StatusOk, _rig.Mem(s, 1)[0]));
        Assert.Equal(n, _rig.Blk.Counters.Requests);
    }

    [Fact]
    public void ADeviceBugOnTheIoThreadBecomesNeedsResetNotACrash()
    {
        _rig.Dispose();
        _rig = new BlkRig(DiskSize, wrap: d => new ThrowingReads(d));
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        ulong s = _rig.StatusByte();
        _rig.Publish(_rig.Chain(new(_rig.Header(TypeIn, 0), 16, false), new(_rig.Alloc(512), 512, true), new(s, 1, true)));
        _rig.Kick();
        Assert.True(PciTransportTests.SpinUntil(() => (_rig.Status & VirtioStatus.DeviceNeedsReset) != 0));
        Assert.IsType<InvalidOperationException>(_rig.Blk.Fault);
        Assert.False(_rig.Blk.IsRunning);
        _rig.Status = 0; // joins the dead thread without hanging
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        Assert.Equal(StatusOk, _rig.WriteSectors(0, new byte[512]).Status);
    }

    /// <summary>A backend whose reads throw: stands in for a bug below the device.</summary>
    private sealed class ThrowingReads(IDiskBackend inner) : IDiskBackend
    {
        public ulong SizeBytes => inner.SizeBytes;
        public bool ReadOnly => inner.ReadOnly;
        public int LogicalBlockSize => 512;
        public string Describe => "throwing";
        public DiskCounters Counters => inner.Counters;
        public DiskIoResult Read(ulong offset, Span<byte> destination) => throw new InvalidOperationException("bug");
        public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source) => inner.Write(offset, source);
        public DiskIoResult Flush() => inner.Flush();
        public DiskIoResult Discard(ulong offset, ulong length) => inner.Discard(offset, length);
        public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap) => inner.WriteZeroes(offset, length, unmap);
        public void Dispose() { }
    }

    [Fact]
    public void ANotificationBeforeDriverOkIsServedAtActivation()
    {
        const byte early = VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk;
        _rig.Status = 0;
        _rig.Status = VirtioStatus.Acknowledge | VirtioStatus.Driver;
        _rig.WriteDriverFeatures(_rig.DeviceFeatures());
        _rig.Status = early;
        _rig.SetUpQueue(256, VirtioPciDevice.NoVector);
        ulong s = _rig.StatusByte();
        _rig.Publish(_rig.Chain(new(_rig.Header(TypeIn, 3), 16, false), new(_rig.Alloc(512), 512, true), new(s, 1, true)));
        _rig.Kick();
        Thread.Sleep(20);
        Assert.Equal(0, _rig.UsedIdx);
        _rig.Status = early | VirtioStatus.DriverOk;
        Assert.Equal(513u, _rig.WaitUsed()[0].Len);
        Assert.Equal(StatusOk, _rig.Mem(s, 1)[0]);
    }

    [Fact]
    public void DirectIoDiskWorksEndToEnd()
    {
        Reopen(cache: DiskCacheMode.None);
        byte[] data = ScratchImage.Pattern(4242, 8192);
        Assert.Equal(StatusOk, _rig.WriteSectors(16, data, segments: 4).Status);
        var back = _rig.ReadSectors(16, 16, segments: 2);
        Assert.Equal(StatusOk, back.Status);
        Assert.Equal(data, back.Data);
        _rig.Pci.Dispose();
        _rig.Disk.Dispose();
        byte[] expected = (byte[])_rig.Initial.Clone();
        data.CopyTo(expected, 16 * 512);
        Assert.Equal(expected, _rig.FileContents);
    }
}
