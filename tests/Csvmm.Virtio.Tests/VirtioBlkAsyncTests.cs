using Csvmm.Block;
using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Virtio.Tests;

/// <summary>
/// virtio-blk on an O_DIRECT disk: aligned reads and writes go through Linux AIO with many in flight; FLUSH waits
/// for the writes before it; a reset waits for everything in flight; the rest stays synchronous.
/// </summary>
public sealed class VirtioBlkAsyncTests : IDisposable
{
    private const int DiskSize = 4 << 20;
    private BlkRig _rig;

    public VirtioBlkAsyncTests()
    {
        _rig = new BlkRig(DiskSize, cache: DiskCacheMode.None);
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
    }

    public void Dispose() => _rig.Dispose();

    private void SkipWithoutDirectIo() => Skip.IfNot(_rig.Disk.DirectIo, "O_DIRECT is not available under /var/tmp");

    /// <summary>Publishes a read of <paramref name="bytes"/> at <paramref name="sector"/> into <paramref name="data"/> split in <paramref name="segments"/>; returns (head, status address).</summary>
    private (ushort Head, ulong Status) PublishRead(ulong sector, ulong data, int bytes, int segments = 1)
    {
        var bufs = new List<Buf> { new(_rig.Header(TypeIn, sector), 16, false) };
        int per = bytes / segments;
        for (int i = 0; i < segments; i++) bufs.Add(new Buf(data + (ulong)(i * per), (uint)per, true));
        ulong status = _rig.StatusByte();
        bufs.Add(new Buf(status, 1, true));
        ushort head = _rig.Chain([.. bufs]);
        _rig.Publish(head, askForInterrupt: false);
        return (head, status);
    }

    private (ushort Head, ulong Status) PublishWrite(ulong sector, byte[] bytes, int segments = 1)
    {
        var bufs = new List<Buf> { new(_rig.Header(TypeOut, sector), 16, false) };
        int per = bytes.Length / segments;
        for (int i = 0; i < segments; i++)
        {
            ulong a = _rig.Alloc(per, 4096);
            bytes.AsSpan(i * per, per).CopyTo(_rig.Mem(a, per));
            bufs.Add(new Buf(a, (uint)per, false));
        }
        ulong status = _rig.StatusByte();
        bufs.Add(new Buf(status, 1, true));
        ushort head = _rig.Chain([.. bufs]);
        _rig.Publish(head, askForInterrupt: false);
        return (head, status);
    }

    [SkippableFact]
    public void ManyReadsInFlightReturnTheFileBytes()
    {
        SkipWithoutDirectIo();
        Assert.True(_rig.Blk.AsyncIo);
        const int n = 64, bytes = 16384;
        var rng = new Random(3);
        var reqs = new (ushort Head, ulong Status, ulong Data, ulong Sector)[n];
        for (int i = 0; i < n; i++)
        {
            ulong sector = (ulong)rng.Next((DiskSize - bytes) / 4096) * 8;
            ulong data = _rig.Alloc(bytes, 4096);
            _rig.Mem(data, bytes).Fill(0xAB);
            var (head, status) = PublishRead(sector, data, bytes, segments: i % 2 + 1); // 224 of the 256 descriptors
            reqs[i] = (head, status, data, sector);
        }
        _rig.SetUsedEvent((ushort)(n - 1));
        _rig.Kick();
        var used = _rig.WaitUsed(n).ToDictionary(u => u.Id, u => u.Len);
        foreach (var r in reqs)
        {
            Assert.Equal((uint)bytes + 1, used[r.Head]);
            Assert.Equal(StatusOk, _rig.Mem(r.Status, 1)[0]);
            Assert.True(_rig.Mem(r.Data, bytes).SequenceEqual(_rig.Initial.AsSpan((int)(r.Sector * 512), bytes)), $"sector {r.Sector}");
        }
        Assert.Equal(n, _rig.Blk.Counters.AsyncRequests);
        Assert.Equal((long)n * bytes, _rig.Blk.Counters.ReadBytes);
        Assert.Equal(0, _rig.Blk.Counters.IoErrors);
        Assert.True(PciTransportTests.SpinUntil(() => _rig.Blk.Counters.Notifications >= 1));
    }

    [SkippableFact]
    public void AFlushWaitsForTheWritesBeforeItAndTheFileHasThem()
    {
        SkipWithoutDirectIo();
        const int n = 16, bytes = 8192;
        byte[] expected = (byte[])_rig.Initial.Clone();
        var writes = new List<(ushort Head, ulong Status)>();
        for (int i = 0; i < n; i++)
        {
            byte[] data = ScratchImage.Pattern(77_000 + i * 13, bytes);
            ulong sector = (ulong)(i * 40 + 8);
            data.CopyTo(expected, (int)sector * 512);
            writes.Add(PublishWrite(sector, data, segments: 2));
        }
        ulong flushStatus = _rig.StatusByte();
        ushort flush = _rig.Chain(new Buf(_rig.Header(TypeFlush, 0), 16, false), new Buf(flushStatus, 1, true));
        _rig.Publish(flush);
        _rig.Kick();

        var used = _rig.WaitUsed(n + 1);
        // The FLUSH is returned after every write it covers.
        Assert.Equal((uint)flush, used[^1].Id);
        Assert.Equal(writes.Select(w => (uint)w.Head).Order(), used[..^1].Select(u => u.Id).Order());
        Assert.All(used[..^1], u => Assert.Equal(1u, u.Len));
        Assert.All(writes, w => Assert.Equal(StatusOk, _rig.Mem(w.Status, 1)[0]));
        Assert.Equal(StatusOk, _rig.Mem(flushStatus, 1)[0]);
        Assert.Equal(1, _rig.Blk.Counters.FlushWaits);
        Assert.Equal(1, _rig.Blk.Counters.Flushes);
        Assert.Equal(n, _rig.Blk.Counters.AsyncRequests);
        Assert.Equal((long)n * bytes, _rig.Blk.Counters.WrittenBytes);

        _rig.Pci.Dispose();
        _rig.Disk.Dispose();
        Assert.Equal(expected, _rig.FileContents);
    }

    [SkippableFact]
    public void AResetWaitsForRequestsInFlightAndNothingIsWrittenAfterIt()
    {
        SkipWithoutDirectIo();
        const int n = 32, bytes = 65536;
        ulong data = _rig.Alloc(n * bytes, 4096);
        for (int round = 0; round < 10; round++)
        {
            _rig.Mem(data, n * bytes).Fill(0xAB);
            var statuses = new ulong[n];
            for (int i = 0; i < n; i++)
                statuses[i] = PublishRead((ulong)(i * bytes / 512), data + (ulong)(i * bytes), bytes, segments: 2).Status;
            _rig.Kick();
            if (round % 2 == 1) Thread.Sleep(round); // sometimes with some finished, sometimes none
            _rig.Status = 0; // reset: returns once nothing is in flight
            Assert.False(_rig.Blk.IsRunning);

            byte[] before = _rig.Mem(data, n * bytes).ToArray();
            byte[] ringBefore = _rig.Mem(BlkRig.Used, 4 + 8 * 256).ToArray();
            byte[] statusBefore = statuses.Select(s => _rig.Mem(s, 1)[0]).ToArray();
            Thread.Sleep(30);
            Assert.True(before.AsSpan().SequenceEqual(_rig.Mem(data, n * bytes)), "a read landed after the reset");
            Assert.True(ringBefore.AsSpan().SequenceEqual(_rig.Mem(BlkRig.Used, 4 + 8 * 256)), "the used ring moved after the reset");
            Assert.Equal(statusBefore, statuses.Select(s => _rig.Mem(s, 1)[0]).ToArray());

            Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        }
        Assert.True(_rig.Blk.AsyncIo);
        var (status, read, _) = _rig.ReadSectors(24, 8);
        Assert.Equal(StatusOk, status);
        Assert.Equal(_rig.Initial.AsSpan(24 * 512, 4096).ToArray(), read);
    }

    [SkippableFact]
    public void MisalignedBuffersAreServedSynchronously()
    {
        SkipWithoutDirectIo();
        Skip.If(_rig.Disk.Alignment.Memory <= 1, "the file system takes any buffer address");
        ulong data = _rig.Alloc(4096 + 1, 4096) + 1;
        var (head, status) = PublishRead(16, data, 4096);
        _rig.SetUsedEvent(0);
        _rig.Kick();
        var (id, len) = _rig.WaitUsed()[0];
        Assert.Equal(head, (ushort)id);
        Assert.Equal(4097u, len);
        Assert.Equal(StatusOk, _rig.Mem(status, 1)[0]);
        Assert.Equal(_rig.Initial.AsSpan(16 * 512, 4096).ToArray(), _rig.Mem(data, 4096).ToArray());
        Assert.Equal(0, _rig.Blk.Counters.AsyncRequests);
        Assert.Equal(1, _rig.Disk.Counters.Bounced);
    }

    [SkippableFact]
    public void AReadPastTheEndOfAShrunkImageIsAnIoError()
    {
        SkipWithoutDirectIo();
        using (var f = File.OpenHandle(_rig.Disk.Path, FileMode.Open, FileAccess.ReadWrite)) RandomAccess.SetLength(f, DiskSize - 4096);
        ulong data = _rig.Alloc(8192, 4096);
        var (_, status) = PublishRead((DiskSize - 8192) / 512, data, 8192);
        _rig.SetUsedEvent(0);
        _rig.Kick();
        Assert.Equal(8193u, _rig.WaitUsed()[0].Len);
        Assert.Equal(StatusIoErr, _rig.Mem(status, 1)[0]);
        Assert.Equal(1, _rig.Blk.Counters.AsyncRequests);
        Assert.Equal(1, _rig.Blk.Counters.IoErrors);
        Assert.Equal(0, _rig.Blk.Counters.ReadBytes);
    }

    [Fact]
    public void BufferedDisksAndTheOptionOutStaySynchronous()
    {
        _rig.Dispose();
        _rig = new BlkRig(DiskSize);
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        Assert.False(_rig.Blk.AsyncIo);
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 8).Status);
        Assert.Equal(0, _rig.Blk.Counters.AsyncRequests);

        _rig.Dispose();
        _rig = new BlkRig(DiskSize, cache: DiskCacheMode.None, options: new VirtioBlkOptions { AsyncIo = false });
        Assert.NotEqual(0, _rig.Init() & VirtioStatus.DriverOk);
        Assert.False(_rig.Blk.AsyncIo);
        Assert.Equal(StatusOk, _rig.ReadSectors(0, 8).Status);
        Assert.Equal(0, _rig.Blk.Counters.AsyncRequests);
    }
}
