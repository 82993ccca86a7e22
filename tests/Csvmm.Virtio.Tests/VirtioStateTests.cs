using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Devices.State;
using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Virtio.Tests;

/// <summary>
/// Quiescing a virtio-blk function and saving its transport and queue state: what a snapshot or a migration of a
/// stopped machine carries, loaded into a freshly built device over a copy of guest RAM.
/// </summary>
public sealed class VirtioStateTests : IDisposable
{
    private readonly List<BlkRig> _rigs = [];

    public void Dispose()
    {
        foreach (var r in _rigs) r.Dispose();
    }

    private BlkRig NewRig(bool msix = true, DiskCacheMode cache = DiskCacheMode.Writeback)
    {
        var rig = new BlkRig(1 << 20, msix: msix, cache: cache);
        _rigs.Add(rig);
        return rig;
    }

    private BlkRig ActiveRig(bool msix = true)
    {
        var rig = NewRig(msix);
        if (msix) rig.EnableMsix();
        Assert.NotEqual(0, rig.Init(msixVectors: msix) & VirtioStatus.DriverOk);
        Assert.True(rig.Blk.IsRunning);
        return rig;
    }

    /// <summary>The three records a machine saves for the function: configuration space, MSI-X table, transport.</summary>
    private static byte[][] SaveFunction(BlkRig rig) =>
        rig.Msi is null
            ? [DeviceStateRecord.Save(rig.Pci.Config), DeviceStateRecord.Save(rig.Pci)]
            : [DeviceStateRecord.Save(rig.Pci.Config), DeviceStateRecord.Save(rig.Pci.Msix!), DeviceStateRecord.Save(rig.Pci)];

    private static void LoadFunction(BlkRig rig, byte[][] records)
    {
        DeviceStateRecord.Load(rig.Pci.Config, records[0]);
        if (rig.Msi is not null) DeviceStateRecord.Load(rig.Pci.Msix!, records[1]);
        DeviceStateRecord.Load(rig.Pci, records[^1]);
    }

    /// <summary>Publishes a one-buffer read of <paramref name="sectors"/> at <paramref name="sector"/>; returns (head, data, status).</summary>
    private static (ushort Head, ulong Data, ulong Status) PublishRead(BlkRig rig, ulong sector, int sectors)
    {
        ulong data = rig.Alloc(512 * sectors, 8);
        rig.Mem(data, 512 * sectors).Fill(0xAB);
        ulong status = rig.StatusByte();
        ushort head = rig.Chain(new Buf(rig.Header(TypeIn, sector), 16, false), new Buf(data, (uint)(512 * sectors), true), new Buf(status, 1, true));
        rig.Publish(head);
        return (head, data, status);
    }

    [Fact]
    public void A_saved_queue_goes_on_in_a_new_device_from_where_it_stopped()
    {
        var a = ActiveRig();
        for (int i = 0; i < 3; i++) Assert.Equal(StatusOk, a.ReadSectors((ulong)i, 1).Status);
        Assert.Equal(StatusOk, a.WriteSectors(40, ScratchImage.Pattern(99, 512)).Status);

        a.Pci.Quiesce();
        Assert.True(a.Pci.IsQuiesced);
        Assert.False(a.Blk.IsRunning);
        // The driver queues a read and notifies while the machine is being saved: nothing serves it.
        var pending = PublishRead(a, 7, 2);
        a.Kick();
        Thread.Sleep(50);
        Assert.Equal(4, a.UsedIdx);
        Assert.Equal(((ushort)4, (ushort)4), a.Pci.QueueIndices(0));
        var records = SaveFunction(a);

        // The restored machine: same guest RAM, a new function loaded quiesced, resumed once everything is loaded.
        var b = NewRig();
        b.AdoptGuest(a);
        b.Pci.Quiesce();
        LoadFunction(b, records);
        Assert.True(b.Pci.IsActive);
        Assert.False(b.Blk.IsRunning);
        Assert.Equal(a.Pci.DriverFeatures, b.Pci.DriverFeatures);
        Assert.Equal(a.Status, b.Status);
        Assert.Equal(((ushort)4, (ushort)4), b.Pci.QueueIndices(0));
        Assert.True(b.Pci.Msix!.Enabled);
        int triggersBefore = b.Msi!.Triggers.Length;
        b.Pci.Resume();

        // The queued read completes as used element 4, with the disk's bytes; an interrupt goes to the queue's vector.
        var (id, len) = b.WaitUsed()[0];
        Assert.Equal(pending.Head, id);
        Assert.Equal(1025u, len);
        Assert.Equal(StatusOk, b.Mem(pending.Status, 1)[0]);
        Assert.True(b.Mem(pending.Data, 1024).SequenceEqual(b.Initial.AsSpan(7 * 512, 1024)));
        Assert.Contains(1, b.Msi.Triggers[triggersBefore..]);
        // And it goes on serving new requests.
        Assert.Equal(StatusOk, b.WriteSectors(100, ScratchImage.Pattern(5, 1024)).Status);
        Assert.True(b.FileContents.AsSpan(100 * 512, 1024).SequenceEqual(ScratchImage.Pattern(5, 1024)));
        Assert.Equal(6, b.UsedIdx);

        // The saved device itself resumes too, and serves what was queued meanwhile.
        a.Pci.Resume();
        Assert.Equal(pending.Head, a.WaitUsed()[0].Id);
    }

    [Fact]
    public void The_state_loaded_and_saved_again_is_the_same_bytes()
    {
        var a = ActiveRig();
        a.ReadSectors(3, 4);
        a.Pci.Quiesce();
        var records = SaveFunction(a);
        var b = NewRig();
        b.AdoptGuest(a);
        b.Pci.Quiesce();
        LoadFunction(b, records);
        Assert.Equal(records[^1], DeviceStateRecord.Save(b.Pci));
    }

    [Fact]
    public void An_active_device_that_is_not_quiesced_refuses_to_save()
    {
        var rig = ActiveRig();
        Assert.Throws<InvalidOperationException>(() => DeviceStateRecord.Save(rig.Pci));
        rig.Pci.Quiesce();
        DeviceStateRecord.Save(rig.Pci);
        rig.Pci.Resume();
        Assert.True(rig.Blk.IsRunning);
        Assert.Equal(StatusOk, rig.ReadSectors(0, 1).Status);
    }

    [Fact]
    public void Quiesce_and_resume_are_idempotent_and_harmless_on_an_idle_device()
    {
        var idle = NewRig();
        idle.Pci.Quiesce();
        idle.Pci.Quiesce();
        idle.Pci.Resume();
        idle.Pci.Resume();
        // A driver activating a quiesced device: nothing is served until resume.
        var rig = NewRig();
        rig.Pci.Quiesce();
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        Assert.True(rig.Pci.IsActive);
        Assert.False(rig.Blk.IsRunning);
        var pending = PublishRead(rig, 1, 1);
        rig.Kick();
        Thread.Sleep(30);
        Assert.Equal(0, rig.UsedIdx);
        rig.Pci.Resume();
        Assert.Equal(pending.Head, rig.WaitUsed()[0].Id);
    }

    [SkippableFact]
    public void Quiesce_completes_every_request_taken_from_the_ring_first()
    {
        var rig = NewRig(cache: DiskCacheMode.None);
        Skip.IfNot(rig.Disk.DirectIo, "O_DIRECT is not available under /var/tmp");
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        Assert.True(rig.Blk.AsyncIo);
        const int n = 48, bytes = 8192;
        var writes = new (ushort Head, ulong Status, ulong Sector, byte[] Data)[n];
        for (int i = 0; i < n; i++)
        {
            var data = ScratchImage.Pattern(1000 + i, bytes);
            ulong a = rig.Alloc(bytes, 4096);
            data.CopyTo(rig.Mem(a, bytes));
            ulong status = rig.StatusByte();
            ulong sector = (ulong)i * 16;
            ushort head = rig.Chain(new Buf(rig.Header(TypeOut, sector), 16, false), new Buf(a, bytes, false), new Buf(status, 1, true));
            rig.Publish(head, askForInterrupt: false);
            writes[i] = (head, status, sector, data);
        }
        rig.Kick();
        // Stop it somewhere in the middle: whatever it took from the ring is complete when Quiesce returns.
        Thread.SpinWait(2000);
        rig.Pci.Quiesce();
        var (nextAvail, nextUsed) = rig.Pci.QueueIndices(0)!.Value;
        Assert.Equal(nextAvail, nextUsed);
        Assert.Equal(nextUsed, rig.UsedIdx);
        Assert.True(rig.Blk.Counters.AsyncRequests > 0 || nextAvail == 0 || nextAvail == n);
        var file = rig.FileContents;
        for (int i = 0; i < nextUsed; i++)
        {
            var e = rig.Mem(BlkRig.Used + 4 + 8 * (ulong)i, 8);
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(e);
            var w = writes.Single(x => x.Head == id); // used ids are chain heads
            Assert.Equal(StatusOk, rig.Mem(w.Status, 1)[0]);
            Assert.True(file.AsSpan((int)w.Sector * 512, bytes).SequenceEqual(w.Data), $"write at sector {w.Sector}");
        }
        Thread.Sleep(30);
        Assert.Equal(nextUsed, rig.UsedIdx); // nothing moves while quiesced

        rig.Pci.Resume();
        rig.WaitUsed(n);
        file = rig.FileContents;
        foreach (var w in writes)
        {
            Assert.Equal(StatusOk, rig.Mem(w.Status, 1)[0]);
            Assert.True(file.AsSpan((int)w.Sector * 512, bytes).SequenceEqual(w.Data));
        }
    }

    [Fact]
    public void A_pending_isr_drives_intx_again_after_a_load()
    {
        var a = ActiveRig(msix: false);
        Assert.Equal(StatusOk, a.ReadSectors(0, 1).Status);
        Assert.True(a.Intx.Level); // ISR bit 0 raised, not read yet
        a.Pci.Quiesce();
        var records = SaveFunction(a);
        var b = NewRig(msix: false);
        b.AdoptGuest(a);
        b.Pci.Quiesce();
        LoadFunction(b, records);
        Assert.True(b.Intx.Level);
        Assert.Equal(VirtioPciDevice.IsrQueue, b.ReadIsr() & VirtioPciDevice.IsrQueue);
        Assert.False(b.Intx.Level);
    }

    [Fact]
    public void Loading_an_idle_state_over_an_active_device_resets_it()
    {
        var idleState = DeviceStateRecord.Save(NewRig().Pci);
        var rig = ActiveRig();
        DeviceStateRecord.Load(rig.Pci, idleState);
        Assert.False(rig.Pci.IsActive);
        Assert.False(rig.Blk.IsRunning);
        Assert.Equal(0, rig.Status);
        Assert.NotEqual(0, rig.Init() & VirtioStatus.DriverOk);
        Assert.Equal(StatusOk, rig.ReadSectors(0, 1).Status);
    }

    // Offsets in the version 1 state of a one-queue device (after the record's own header).
    private const int OffType = 0, OffQueues = 2, OffFeatures = 12, OffStatus = 20, OffConfigVector = 21, OffActive = 29, OffIsr = 30,
        OffQueueSize = 31, OffDesc = 33, OffUsed = 49, OffEnabled = 57, OffVector = 58, OffLastError = 60, OffRingError = 65, StateLength = 66;

    public static TheoryData<string, int, ulong, int> HostileFields() => new()
    {
        { "device type", OffType, 1, 2 },
        { "queue count", OffQueues, 2, 2 },
        { "features not offered", OffFeatures, VirtioFeatures.Version1 | 1UL << 34, 8 },
        { "reserved status bits", OffStatus, 0x1F, 1 },
        { "active without DRIVER_OK", OffStatus, VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk, 1 },
        { "config vector", OffConfigVector, 2, 2 },
        { "bool", OffActive, 2, 1 },
        { "ISR", OffIsr, 4, 1 },
        { "queue size not a power of two", OffQueueSize, 100, 2 },
        { "queue size above the maximum", OffQueueSize, 512, 2 },
        { "descriptor table outside RAM", OffDesc, 0xFFFF_FFFF_0000, 8 },
        { "misaligned used ring", OffUsed, BlkRig.Used + 2, 8 },
        { "used ring in ROM", OffUsed, 0x100_0000, 8 },
        { "enabled bool", OffEnabled, 7, 1 },
        { "queue vector", OffVector, 9, 2 },
        { "error on an enabled queue", OffLastError, (ulong)VirtqueueError.RingOutOfRange, 1 },
        { "ring error", OffRingError, (ulong)VirtqueueError.ChainTooLong, 1 },
    };

    [Theory]
    [MemberData(nameof(HostileFields))]
    public void A_hostile_state_is_refused_and_the_device_goes_on(string what, int offset, ulong value, int width)
    {
        var rig = ActiveRig();
        rig.Pci.Quiesce();
        var state = new StateWriter();
        rig.Pci.SaveState(state);
        rig.Pci.Resume();
        var bytes = state.Written.ToArray();
        Assert.Equal(StateLength, bytes.Length);
        for (int i = 0; i < width; i++) bytes[offset + i] = (byte)(value >> (8 * i));

        var e = Assert.Throws<DeviceStateException>(() => rig.Pci.LoadState(bytes, 1));
        Assert.False(string.IsNullOrWhiteSpace(e.Message), what);
        Assert.True(rig.Pci.IsActive, what);
        Assert.True(rig.Blk.IsRunning, what);
        Assert.Equal(StatusOk, rig.ReadSectors(2, 1).Status);
    }

    [Fact]
    public void Every_truncation_a_trailing_byte_and_a_wrong_version_are_refused()
    {
        var rig = ActiveRig();
        rig.Pci.Quiesce();
        var state = new StateWriter();
        rig.Pci.SaveState(state);
        var bytes = state.Written.ToArray();
        for (int n = 0; n < bytes.Length; n++)
            Assert.Throws<DeviceStateException>(() => rig.Pci.LoadState(bytes.AsSpan(0, n), 1));
        Assert.Throws<DeviceStateException>(() => rig.Pci.LoadState([.. bytes, 0], 1));
        Assert.Throws<DeviceStateException>(() => rig.Pci.LoadState(bytes, 2));
        rig.Pci.Resume();
        Assert.True(rig.Blk.IsRunning);
        Assert.Equal(StatusOk, rig.ReadSectors(2, 1).Status);
    }
}
