using Csvmm.Devices.Pci;
using static Csvmm.Virtio.VirtioBlkConstants;

namespace Csvmm.Virtio.Tests;

public sealed class PciTransportTests : IDisposable
{
    private readonly BlkRig _rig = new();

    public void Dispose() => _rig.Dispose();

    private const byte Ack = VirtioStatus.Acknowledge, Drv = VirtioStatus.Driver, FeOk = VirtioStatus.FeaturesOk,
        DrvOk = VirtioStatus.DriverOk, NeedsReset = VirtioStatus.DeviceNeedsReset;

    [Fact]
    public void IdentifiesAsAModernVirtioBlockFunction()
    {
        var c = _rig.Pci.Config;
        Assert.Equal(0x1AF4, c.ReadWord(PciConfigSpace.VendorIdOffset));
        Assert.Equal(0x1042, c.ReadWord(PciConfigSpace.DeviceIdOffset));
        Assert.Equal(1, c.ReadByte(PciConfigSpace.RevisionIdOffset));
        Assert.Equal(0x018000u, c.ReadDword(PciConfigSpace.RevisionIdOffset) >> 8);
        Assert.Equal(0x1AF4, c.ReadWord(PciConfigSpace.SubsystemVendorIdOffset));
        Assert.Equal(2, c.ReadWord(PciConfigSpace.SubsystemIdOffset));
        Assert.Equal(1, c.ReadByte(PciConfigSpace.InterruptPinOffset));
        Assert.NotEqual(0, c.ReadWord(PciConfigSpace.StatusOffset) & PciConfigSpace.StatusCapabilitiesList);
        Assert.Null(_rig.Pci.GetBarDevice(1));
        Assert.NotNull(_rig.Pci.GetBarDevice(0));
    }

    [Fact]
    public void CapabilityListDescribesEveryStructureInsideBar0()
    {
        Assert.Equal(VirtioPciDevice.CommonOffset, _rig.Common);
        Assert.Equal(VirtioPciDevice.IsrOffset, _rig.Isr);
        Assert.Equal(VirtioPciDevice.DeviceConfigOffset, _rig.DeviceCfg);
        Assert.Equal(VirtioPciDevice.NotifyOffset, _rig.Notify);
        Assert.Equal(4u, _rig.NotifyMultiplier);
        Assert.Equal((uint)ConfigLength, _rig.DeviceCfgLength);

        // Walk it again checking lengths and that everything fits in the BAR; MSI-X is on the list too.
        var c = _rig.Pci.Config;
        var seen = new List<(byte Id, byte Type)>();
        int cap = c.ReadByte(PciConfigSpace.CapabilitiesPointerOffset);
        while (cap != 0)
        {
            Assert.True(cap >= 0x40 && cap % 4 == 0);
            byte id = c.ReadByte(cap);
            if (id == 0x09)
            {
                byte type = c.ReadByte(cap + 3);
                Assert.Equal(type == 2 ? 20 : 16, c.ReadByte(cap + 2));
                Assert.True(c.ReadDword(cap + 8) + c.ReadDword(cap + 12) <= VirtioPciDevice.BarSize);
                seen.Add((id, type));
            }
            else seen.Add((id, 0));
            cap = c.ReadByte(cap + 1);
        }
        Assert.Equal([(9, 1), (9, 2), (9, 3), (9, 4), (0x11, 0)], seen);
        var msix = _rig.Pci.Msix!;
        Assert.Equal(1, c.ReadWord(msix.CapabilityOffset + 2)); // two vectors: table size - 1
        Assert.Equal(VirtioPciDevice.MsixTableOffset, c.ReadDword(msix.CapabilityOffset + 4));
        Assert.Equal(VirtioPciDevice.MsixPbaOffset, c.ReadDword(msix.CapabilityOffset + 8));
    }

    [Fact]
    public void Bar0IsA32BitMemoryBarOf32KiB()
    {
        var c = _rig.Pci.Config;
        _rig.Pci.WriteConfig(PciConfigSpace.Bar0Offset, [0xFF, 0xFF, 0xFF, 0xFF]);
        Assert.Equal(0xFFFF_8000u, c.ReadDword(PciConfigSpace.Bar0Offset));
        _rig.Pci.WriteConfig(PciConfigSpace.Bar0Offset, [0x00, 0x00, 0x00, 0xE0]);
        var bar = c.GetBar(0);
        Assert.Equal(PciBarKind.Memory32, bar.Kind);
        Assert.Equal(0x8000ul, bar.Size);
        Assert.Equal(0xE000_0000ul, bar.Address);
        Assert.False(bar.Prefetchable);
    }

    [Fact]
    public void OfferedFeaturesAreTheBlockSet()
    {
        ulong f = _rig.DeviceFeatures();
        ulong expected = VirtioFeatures.Version1 | VirtioFeatures.IndirectDesc | VirtioFeatures.EventIdx
            | 1UL << FeatureSegMax | 1UL << FeatureSizeMax | 1UL << FeatureBlkSize | 1UL << FeatureFlush
            | 1UL << FeatureDiscard | 1UL << FeatureWriteZeroes;
        Assert.Equal(expected, f);
        _rig.C32(0x00, 2);
        Assert.Equal(0u, _rig.C32(0x04));
        Assert.Equal(2u, _rig.C32(0x00));
    }

    [Fact]
    public void FeaturesOkSticksForASubsetWithVersion1()
    {
        _rig.Status = Ack | Drv;
        ulong want = VirtioFeatures.Version1 | 1UL << FeatureFlush;
        _rig.WriteDriverFeatures(want);
        _rig.Status = Ack | Drv | FeOk;
        Assert.Equal(Ack | Drv | FeOk, _rig.Status);
        Assert.Equal(want, _rig.Pci.DriverFeatures);
        _rig.C32(0x08, 1);
        Assert.Equal(1u, _rig.C32(0x0C));
        // Features are frozen after FEATURES_OK.
        _rig.C32(0x08, 0);
        _rig.C32(0x0C, 0xFFFF_FFFF);
        Assert.Equal(want, _rig.Pci.DriverFeatures);
    }

    [Theory]
    [InlineData(1UL << 9)]                                  // no VERSION_1
    [InlineData(VirtioFeatures.Version1 | 1UL << 12)]       // MQ: not offered
    [InlineData(VirtioFeatures.Version1 | 1UL << 34)]       // packed ring: not offered
    public void FeaturesOkIsRefused(ulong features)
    {
        Assert.Equal(Ack | Drv, _rig.Init(features));
        Assert.False(_rig.Pci.IsActive);
        // DRIVER_OK without FEATURES_OK does not start the device.
        _rig.Status = Ack | Drv | DrvOk;
        Assert.False(_rig.Pci.IsActive);
        Assert.False(_rig.Blk.IsRunning);
    }

    [Fact]
    public void QueueRegistersFollowTheSpec()
    {
        Assert.Equal(1, _rig.C16(0x12)); // num_queues
        _rig.C16(0x16, 0);
        Assert.Equal(256, _rig.C16(0x18));
        _rig.C16(0x18, 64);
        Assert.Equal(64, _rig.C16(0x18));
        _rig.C16(0x18, 100); // not a power of two: ignored
        _rig.C16(0x18, 512); // above the maximum: ignored
        _rig.C16(0x18, 0);
        Assert.Equal(64, _rig.C16(0x18));
        Assert.Equal(0, _rig.C16(0x1E)); // queue_notify_off

        _rig.C16(0x1A, 1);
        Assert.Equal(1, _rig.C16(0x1A));
        _rig.C16(0x1A, 2); // only vectors 0 and 1 exist
        Assert.Equal(VirtioPciDevice.NoVector, _rig.C16(0x1A));
        _rig.C16(0x10, 0);
        Assert.Equal(0, _rig.C16(0x10));
        _rig.C16(0x10, 7);
        Assert.Equal(VirtioPciDevice.NoVector, _rig.C16(0x10));

        _rig.C32(0x20, 0x1234_5670);
        _rig.C32(0x24, 0x9);
        Assert.Equal(0x9_1234_5670ul, _rig.Common64(0x20));
        _rig.Write(_rig.Common + 0x28, 8, 0xABCD_0000_2000);
        Assert.Equal(0x2000u, _rig.C32(0x28));
        Assert.Equal(0xABCDu, _rig.C32(0x2C));
        _rig.Write(_rig.Common + 0x30, 8, 0x3000);
        Assert.Equal(0x3000ul, _rig.Common64(0x30));

        // A queue that does not exist: size 0, writes ignored.
        _rig.C16(0x16, 3);
        Assert.Equal(0, _rig.C16(0x18));
        _rig.C16(0x18, 16);
        _rig.C16(0x1C, 1);
        Assert.Equal(0, _rig.C16(0x18));
        Assert.Equal(0, _rig.C16(0x1C));
        Assert.Equal(0, _rig.Status & NeedsReset);
    }

    [Theory]
    [InlineData(BlkRig.Desc + 8, BlkRig.Avail, BlkRig.Used, VirtqueueError.MisalignedRing)]
    [InlineData(BlkRig.Desc, BlkRig.Avail + 1, BlkRig.Used, VirtqueueError.MisalignedRing)]
    [InlineData(BlkRig.Desc, BlkRig.Avail, BlkRig.RamSize - 16, VirtqueueError.RingOutOfRange)]
    [InlineData(0xFFFF_FFFF_FFFF_FFF0, BlkRig.Avail, BlkRig.Used, VirtqueueError.RingOutOfRange)]
    [InlineData(BlkRig.Desc, BlkRig.Avail, 0x100_0000, VirtqueueError.RingReadOnly)]
    public void BadRingAddressesSetNeedsResetAndSendAConfigInterrupt(ulong desc, ulong avail, ulong used, VirtqueueError error)
    {
        _rig.Status = Ack | Drv;
        _rig.WriteDriverFeatures(VirtioFeatures.Version1);
        _rig.Status = Ack | Drv | FeOk;
        _rig.SetUpQueue(256, VirtioPciDevice.NoVector, desc, avail, used);
        Assert.Equal(error, _rig.Pci.QueueError(0));
        Assert.Equal(0, _rig.C16(0x1C)); // not enabled
        Assert.NotEqual(0, _rig.Status & NeedsReset);
        Assert.True(_rig.Intx.Level); // MSI-X is off: INTx with ISR bit 1
        Assert.Equal(VirtioPciDevice.IsrConfig, _rig.ReadIsr());
        Assert.False(_rig.Intx.Level);

        // The driver cannot clear NEEDS_RESET except by resetting; DRIVER_OK does not activate a broken device.
        _rig.Status = Ack | Drv | FeOk | DrvOk;
        Assert.NotEqual(0, _rig.Status & NeedsReset);
        Assert.False(_rig.Pci.IsActive);
        _rig.Status = 0;
        Assert.Equal(0, _rig.Status);
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init());
    }

    [Fact]
    public void ResetStopsTheIoThreadAndClearsTheRegisters()
    {
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init(queueSize: 128, msixVectors: true));
        Assert.True(_rig.Blk.IsRunning);
        Assert.Equal(0, _rig.ReadSectors(0, 1).Status);

        _rig.Status = 0;
        Assert.False(_rig.Blk.IsRunning);
        Assert.False(_rig.Pci.IsActive);
        Assert.Equal(0, _rig.Status);
        _rig.C16(0x16, 0);
        Assert.Equal(256, _rig.C16(0x18));
        Assert.Equal(0, _rig.C16(0x1C));
        Assert.Equal(VirtioPciDevice.NoVector, _rig.C16(0x1A));
        Assert.Equal(VirtioPciDevice.NoVector, _rig.C16(0x10));
        Assert.Equal(0ul, _rig.Common64(0x20));
        Assert.Equal(0u, _rig.C32(0x0C));
        Assert.Equal(1, _rig.Pci.Resets - 1); // Init reset once, then this one

        // Notifications after reset go nowhere; a fresh init works again.
        _rig.Kick();
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init());
        var (status, data, _) = _rig.ReadSectors(3, 2);
        Assert.Equal(0, status);
        Assert.Equal(_rig.Initial.AsSpan(3 * 512, 1024).ToArray(), data);
    }

    [Fact]
    public void IsrReadClearsAndLowersIntx()
    {
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init(VirtioFeatures.Version1));
        Assert.False(_rig.Intx.Level);
        Assert.Equal(0, _rig.ReadSectors(0, 1).Status);
        Assert.True(SpinUntil(() => _rig.Intx.Level));
        Assert.Equal(VirtioPciDevice.IsrQueue, _rig.ReadIsr());
        Assert.False(_rig.Intx.Level);
        Assert.Equal(0, _rig.ReadIsr());

        // Interrupt Disable in the command register holds the line low; clearing it raises it again.
        _rig.Pci.WriteConfig(PciConfigSpace.CommandOffset, [0x06, 0x04]);
        Assert.Equal(0, _rig.ReadSectors(1, 1).Status);
        Thread.Sleep(20);
        Assert.False(_rig.Intx.Level);
        _rig.Pci.WriteConfig(PciConfigSpace.CommandOffset, [0x06, 0x00]);
        Assert.True(_rig.Intx.Level);
        Assert.Equal(VirtioPciDevice.IsrQueue, _rig.ReadIsr());
        Assert.False(_rig.Intx.Level);
    }

    [Fact]
    public void MsixDeliversTheQueueVectorAndNeverTouchesIntx()
    {
        _rig.EnableMsix();
        Assert.Equal(0x31u, _rig.Msi!.Routes[1]!.Value.Data);
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init(msixVectors: true));
        Assert.Equal(0, _rig.ReadSectors(0, 1).Status);
        Assert.True(SpinUntil(() => _rig.Msi.Triggers.Length == 1));
        Assert.Equal([1], _rig.Msi.Triggers);
        Assert.Equal(0, _rig.Intx.Count);
        Assert.Equal(0, _rig.ReadIsr());

        // Masked: pending, delivered on unmask.
        _rig.Write(VirtioPciDevice.MsixTableOffset + 16 + 12, 4, 1);
        Assert.Equal(0, _rig.ReadSectors(1, 1).Status);
        Assert.True(SpinUntil(() => _rig.Pci.Msix!.IsPending(1)));
        Assert.Equal(2ul, _rig.Read(VirtioPciDevice.MsixPbaOffset, 8));
        Assert.Single(_rig.Msi.Triggers);
        _rig.Write(VirtioPciDevice.MsixTableOffset + 16 + 12, 4, 0);
        Assert.Equal([1, 1], _rig.Msi.Triggers);
        Assert.Equal(0ul, _rig.Read(VirtioPciDevice.MsixPbaOffset, 8));
    }

    [Fact]
    public void MsixWithNoVectorSendsNothing()
    {
        _rig.EnableMsix();
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init(msixVectors: false));
        Assert.Equal(0, _rig.ReadSectors(0, 1).Status);
        Thread.Sleep(20);
        Assert.Empty(_rig.Msi!.Triggers);
        Assert.Equal(0, _rig.Intx.Count);
    }

    [Fact]
    public void ConfigInterruptUsesTheConfigVector()
    {
        _rig.EnableMsix();
        _rig.Init(msixVectors: true);
        _rig.Pci.NotifyConfigChanged();
        Assert.Equal([0], _rig.Msi!.Triggers);
        Assert.Equal(1, _rig.C8(0x15)); // config_generation moved
    }

    [Fact]
    public void DoorbellsPointAtTheNotifyRegisterAndSignalItsEventfd()
    {
        var d = Assert.Single(_rig.Pci.Doorbells);
        Assert.Equal(0, d.Queue);
        Assert.Equal(0, d.Bar);
        Assert.Equal((ulong)_rig.Notify, d.Offset);
        Assert.Equal(0ul, d.Event.Consume());
        _rig.Write(d.Offset, 2, 0); // the slow path (no ioeventfd): the transport signals the same eventfd
        _rig.Write(d.Offset, 4, 0);
        Assert.Equal(2ul, d.Event.Consume());
        Assert.Equal(2, _rig.Pci.SlowNotifications);
        _rig.Write(d.Offset + 4, 2, 0); // no queue 1
        _rig.Write(d.Offset + 1, 1, 0);
        Assert.Equal(0ul, d.Event.Consume());
    }

    [Fact]
    public void DeviceConfigReadsAtEveryWidth()
    {
        ulong sectors = (1 << 20) / 512;
        Assert.Equal(sectors, _rig.Read(_rig.DeviceCfg + ConfigCapacity, 8));
        Assert.Equal((uint)sectors, _rig.Read(_rig.DeviceCfg + ConfigCapacity, 4));
        Assert.Equal(0ul, _rig.Read(_rig.DeviceCfg + ConfigCapacity + 4, 4));
        Assert.Equal(512ul, _rig.Read(_rig.DeviceCfg + ConfigBlkSize, 4));
        Assert.Equal(254ul, _rig.Read(_rig.DeviceCfg + ConfigSegMax, 4));
        Assert.Equal(1ul << 20, _rig.Read(_rig.DeviceCfg + ConfigSizeMax, 4));
        Assert.Equal(32ul, _rig.Read(_rig.DeviceCfg + ConfigMaxDiscardSeg, 4));
        Assert.Equal(8ul, _rig.Read(_rig.DeviceCfg + ConfigDiscardSectorAlignment, 4));
        Assert.Equal(1ul, _rig.Read(_rig.DeviceCfg + ConfigWriteZeroesMayUnmap, 1));
        Assert.Equal(1ul, _rig.Read(_rig.DeviceCfg + ConfigNumQueues, 2));
        Assert.Equal(0ul, _rig.Read(_rig.DeviceCfg + ConfigLength - 2, 4)); // runs past the end
        _rig.Write(_rig.DeviceCfg + ConfigCapacity, 8, 5); // read-only
        Assert.Equal(sectors, _rig.Read(_rig.DeviceCfg + ConfigCapacity, 8));
    }

    [Fact]
    public void WrongWidthsAndOffsetsReadZeroAndAreIgnored()
    {
        Assert.Equal(0ul, _rig.Read(_rig.Common + 0x04, 2));    // device_feature is 32-bit
        Assert.Equal(0ul, _rig.Read(_rig.Common + 0x14, 2));    // device_status is 8-bit
        Assert.Equal(0ul, _rig.Read(_rig.Common + 0x13, 1));
        Assert.Equal(0ul, _rig.Read(_rig.Common + 0x40, 4));
        Assert.Equal(0ul, _rig.Read(_rig.Isr + 1, 1));
        Assert.Equal(0ul, _rig.Read(0x7000, 4));
        Assert.Equal(0ul, _rig.Read(VirtioPciDevice.BarSize, 4));
        Assert.Equal(0ul, _rig.Read(ulong.MaxValue - 1, 2));
        _rig.Write(_rig.Common + 0x14, 4, 0xFF);
        Assert.Equal(0, _rig.Status);
        _rig.Write(_rig.Common + 0x16, 1, 5);
        Assert.Equal(0, _rig.C16(0x16));
        Assert.True(_rig.Pci.BadAccesses >= 9);
    }

    [Fact]
    public void RandomGuestAccessesNeverThrowAndTheDeviceStillWorksAfterReset()
    {
        var random = new Random(1234);
        int[] widths = [1, 2, 4, 8];
        for (int i = 0; i < 20_000; i++)
        {
            ulong offset = random.Next(4) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(0, 0x6100);
            int width = widths[random.Next(4)];
            if (random.Next(2) == 0) _rig.Read(offset, width);
            else _rig.Write(offset, width, (ulong)random.NextInt64());
            if (i % 64 == 0)
            {
                var b = new byte[random.Next(1, 5)];
                random.NextBytes(b);
                _rig.Pci.WriteConfig(random.Next(0, 300), b);
            }
        }
        _rig.Status = 0;
        _rig.Pci.WriteConfig(PciConfigSpace.CommandOffset, [0x06, 0x00]);
        Assert.Equal(Ack | Drv | FeOk | DrvOk, _rig.Init());
        Assert.Equal(0, _rig.ReadSectors(5, 1).Status);
    }

    [Fact]
    public void DisposeStopsTheThreadAndIsIdempotent()
    {
        _rig.Init();
        Assert.True(_rig.Blk.IsRunning);
        _rig.Pci.Dispose();
        Assert.False(_rig.Blk.IsRunning);
        _rig.Pci.Dispose();
        // Accesses after dispose are harmless.
        _rig.Status = 0;
        _rig.Read(_rig.Common, 4);
    }

    [Fact]
    public void FunctionResetDisablesMsixAndStopsTheDevice()
    {
        _rig.EnableMsix();
        _rig.Init(msixVectors: true);
        Assert.True(_rig.Pci.Msix!.Enabled);
        _rig.Pci.ResetFunction();
        Assert.False(_rig.Blk.IsRunning);
        Assert.Equal(0, _rig.Status);
        Assert.False(_rig.Pci.Msix.Enabled);
        Assert.Equal(1, _rig.Pci.Config.ReadWord(_rig.Pci.Msix.CapabilityOffset + 2));
        Assert.Null(_rig.Msi!.Routes[0]);
        Assert.Equal(1ul, _rig.Read(VirtioPciDevice.MsixTableOffset + 12, 4)); // masked again
        // INTx works after it.
        _rig.Init();
        Assert.Equal(0, _rig.ReadSectors(0, 1).Status);
        Assert.True(SpinUntil(() => _rig.Intx.Level));
    }

    internal static bool SpinUntil(Func<bool> condition, int timeoutMs = 5000) =>
        SpinWait.SpinUntil(condition, timeoutMs);
}
