using System.Buffers.Binary;

namespace Csvmm.TinyGuests.Tests;

/// <summary>
/// The disk guest's drivers against a VMM's devices, on scratch images the host fills and checks byte for byte. The same
/// tests run against QEMU 7.2 (virtio-blk-pci disable-legacy=on, PIIX3 IDE: the oracle that proves the guests right)
/// and against csvmm's own virtio-blk and PIIX IDE.
/// </summary>
public abstract class DiskGuestTests
{
    /// <summary>Boots the guest built from <paramref name="options"/> with <paramref name="disk"/> under the VMM.</summary>
    protected abstract GuestRunResult Run(DiskGuestOptions options, DiskAttachment disk);

    /// <summary>Boots the guest with <paramref name="disk"/> as the secondary channel's slave (position 3 of 4).</summary>
    protected abstract GuestRunResult RunOnSecondarySlave(DiskGuestOptions options, DiskAttachment disk);

    /// <summary>The VMM's exit code when the guest reports FAIL.</summary>
    protected abstract int FailExitCode { get; }

    private GuestRunResult RunExpectingPass(DiskGuestOptions options, DiskAttachment disk)
    {
        GuestRunResult run = Run(options, disk);
        Assert.True(run.Passed && run.ExitCode == GuestRun.ExpectedPassExitCode(run.Vmm) && !run.TimedOut, run.Describe());
        return run;
    }

    /// <summary>Driver variants: interface and the IDE knobs (LBA48 commands, READ/WRITE MULTIPLE).</summary>
    public static TheoryData<string> Variants => ["virtio", "virtio-chunk8", "ide-pio", "ide-pio-multiple", "ide-pio-lba48", "ide-dma", "ide-dma-lba48", "ide-dma-pauses"];

    public static TheoryData<string> CacheNoneVariants => ["virtio", "ide-dma"];

    private static DiskGuestOptions Options(string variant, params DiskOp[] ops) => variant switch
    {
        "virtio" => new() { Interface = DiskInterface.Virtio, Operations = ops },
        "virtio-chunk8" => new() { Interface = DiskInterface.Virtio, Operations = ops, ChunkSectors = 8 },
        "ide-pio" => new() { Interface = DiskInterface.IdePio, Operations = ops },
        "ide-pio-multiple" => new() { Interface = DiskInterface.IdePio, Operations = ops, PioMultiple = 16 },
        "ide-pio-lba48" => new() { Interface = DiskInterface.IdePio, Operations = ops, ForceLba48 = true },
        "ide-dma" => new() { Interface = DiskInterface.IdeDma, Operations = ops },
        "ide-dma-lba48" => new() { Interface = DiskInterface.IdeDma, Operations = ops, ForceLba48 = true },
        "ide-dma-pauses" => new() { Interface = DiskInterface.IdeDma, Operations = ops, IdePollPauses = 200 },
        _ => throw new ArgumentException(variant),
    };

    private static DiskAttachment Attach(ScratchDisk disk, DiskGuestOptions options, bool readOnly = false, bool cacheNone = false) =>
        new(disk.Path, options.Interface, readOnly, cacheNone);

    [Theory]
    [MemberData(nameof(Variants))]
    public void GuestFindsTheControllerAndReportsTheCapacity(string variant)
    {
        using var disk = new ScratchDisk();
        var options = Options(variant);
        GuestRunResult run = RunExpectingPass(options, Attach(disk, options));
        string expected = options.Interface switch
        {
            DiskInterface.Virtio => "DISK virtio 1af4:1042 ",
            DiskInterface.IdePio => "DISK ide-pio 8086:7010 00:01.1 ",
            _ => "DISK ide-dma 8086:7010 00:01.1 ",
        };
        string? line = run.LineStartingWith("DISK ");
        Assert.True(line is not null && line.StartsWith(expected, StringComparison.Ordinal), run.Describe());
        Assert.EndsWith($" sectors={disk.Sectors}", line);
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void GuestReadsWhatTheHostWrote(string variant)
    {
        using var disk = new ScratchDisk();
        ulong last = disk.Sectors;
        var options = Options(variant,
            DiskOp.ReadVerify(0, 1, ScratchDisk.FillSeed),
            DiskOp.ReadVerify(1, 600, ScratchDisk.FillSeed),           // several chunks, > 64 KiB of PRDs per DMA request
            DiskOp.ReadVerify(last - 37, 37, ScratchDisk.FillSeed));   // the last sectors of the disk
        GuestRunResult run = RunExpectingPass(options, Attach(disk, options));
        Assert.Equal(3, run.Lines.Count(l => l.Text.StartsWith("OK read", StringComparison.Ordinal)));
        Assert.Null(disk.Compare());
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void GuestWritesAndFlushesAndTheFileMatchesByteForByte(string variant)
    {
        using var disk = new ScratchDisk();
        (ulong Lba, int Sectors, ulong Seed)[] writes = [(100, 1, 0xA1), (1000, 700, 0xB2), (disk.Sectors - 1, 1, 0xC3), (2000, 256, 0xD4)];
        var ops = new List<DiskOp>();
        foreach (var w in writes)
        {
            ops.Add(DiskOp.Write(w.Lba, (ulong)w.Sectors, w.Seed));
            disk.ExpectWrite(w.Lba, w.Sectors, w.Seed);
        }
        ops.Add(DiskOp.Flush());
        foreach (var w in writes) ops.Add(DiskOp.ReadVerify(w.Lba, (ulong)w.Sectors, w.Seed));
        ops.Add(DiskOp.ReadVerify(101, 899, ScratchDisk.FillSeed));    // untouched between the writes
        var options = Options(variant, [.. ops]);

        GuestRunResult run = RunExpectingPass(options, Attach(disk, options));
        Assert.Contains("OK flush", run.Lines.Select(l => l.Text));
        string? difference = disk.Compare();
        Assert.True(difference is null, difference + Environment.NewLine + run.Describe());
    }

    [Theory]
    [MemberData(nameof(CacheNoneVariants))]
    public void WriteFlushReadWorksWithCacheNone(string variant)
    {
        using var disk = new ScratchDisk();
        var options = Options(variant, DiskOp.Write(64, 300, 0x77), DiskOp.Flush(), DiskOp.ReadVerify(0, 64, ScratchDisk.FillSeed),
            DiskOp.ReadVerify(64, 300, 0x77));
        disk.ExpectWrite(64, 300, 0x77);
        RunExpectingPass(options, Attach(disk, options, cacheNone: true));
        Assert.Null(disk.Compare());
    }

    [Fact]
    public void WriteToReadOnlyVirtioDiskFailsInTheGuestAndLeavesTheFileUnchanged()
    {
        using var disk = new ScratchDisk();
        byte[] before = disk.Hash();
        var options = Options("virtio",
            DiskOp.ReadVerify(0, 16, ScratchDisk.FillSeed),
            DiskOp.WriteExpectFailure(10, 4, 0x1234),
            DiskOp.Flush(),
            DiskOp.ReadVerify(8, 8, ScratchDisk.FillSeed));
        GuestRunResult run = RunExpectingPass(options, Attach(disk, options, readOnly: true));
        Assert.Contains("OK write-failed code=1", run.Lines.Select(l => l.Text));   // VIRTIO_BLK_S_IOERR
        Assert.Equal(before, disk.Hash());
    }

    [Fact]
    public void GuestReportsAWriteThatShouldHaveFailedButDidNot()
    {
        using var disk = new ScratchDisk();
        var options = Options("virtio", DiskOp.WriteExpectFailure(10, 4, 0x1234));
        GuestRunResult run = Run(options, Attach(disk, options));
        Assert.False(run.Passed, run.Describe());
        Assert.Equal("FAIL write-succeeded 0", run.LineStartingWith("FAIL"));
        Assert.Equal(FailExitCode, run.ExitCode);
    }

    [Theory]
    [InlineData("virtio")]
    [InlineData("ide-pio")]
    [InlineData("ide-dma")]
    public void GuestVerificationCatchesACorruptedQword(string variant)
    {
        using var disk = new ScratchDisk();
        const long corrupt = 300 * 512 + 8 * 13;
        using (var file = new FileStream(disk.Path, FileMode.Open, FileAccess.Write))
        {
            file.Position = corrupt;
            var bytes = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, ~DiskPattern.Qword(corrupt, ScratchDisk.FillSeed));
            file.Write(bytes);
        }
        var options = Options(variant, DiskOp.ReadVerify(0, 1024, ScratchDisk.FillSeed));
        GuestRunResult run = Run(options, Attach(disk, options));
        Assert.Equal($"FAIL verify {corrupt:x}", run.LineStartingWith("FAIL"));
        Assert.False(run.Passed);
    }

    [Fact]
    public void VirtioGuestWithoutAVirtioDeviceSaysSo()
    {
        using var disk = new ScratchDisk();
        var options = Options("virtio");
        GuestRunResult run = Run(options, new DiskAttachment(disk.Path, DiskInterface.IdeDma));
        Assert.Equal("FAIL no-device 0", run.LineStartingWith("FAIL"));
    }

    [Theory]
    [InlineData("virtio", 4u)]
    [InlineData("ide-dma", 1u)]
    [InlineData("ide-pio", 1u)]
    public void BenchmarkOperationsPrintTheirMarkersAndCounts(string variant, uint seqQueueDepth)
    {
        using var disk = new ScratchDisk();
        var options = Options(variant,
            DiskOp.BenchSequential(0, 64, 256, seqQueueDepth),
            DiskOp.BenchRandom(500, 8, 32, 0x5EED),
            DiskOp.ReadVerify(0, 2048, ScratchDisk.FillSeed));   // the reads left the data alone (and the driver usable)
        GuestRunResult run = RunExpectingPass(options, Attach(disk, options));
        string[] lines = [.. run.Lines.Select(l => l.Text)];
        int seqStart = Array.IndexOf(lines, "BENCH seq-start"), seqDone = Array.IndexOf(lines, "BENCH seq-done 64");
        int randStart = Array.IndexOf(lines, "BENCH rand-start"), randDone = Array.IndexOf(lines, "BENCH rand-done 500");
        Assert.True(seqStart >= 0 && seqDone > seqStart && randStart > seqDone && randDone > randStart, run.Describe());
        Assert.NotNull(run.Between("BENCH seq-start", "BENCH seq-done"));
        Assert.Null(disk.Compare());
    }

    [Theory]
    [InlineData(DiskInterface.IdePio)]
    [InlineData(DiskInterface.IdeDma)]
    public void IdeDriverReachesTheSecondaryChannelSlave(DiskInterface iface)
    {
        using var disk = new ScratchDisk();
        var options = new DiskGuestOptions
        {
            Interface = iface, SecondaryChannel = true, Slave = true,
            Operations = [DiskOp.Write(40, 200, 0x2B), DiskOp.Flush(), DiskOp.ReadVerify(0, 40, ScratchDisk.FillSeed), DiskOp.ReadVerify(40, 200, 0x2B)],
        };
        disk.ExpectWrite(40, 200, 0x2B);
        GuestRunResult run = RunOnSecondarySlave(options, new DiskAttachment(disk.Path, iface));
        Assert.True(run.Passed && run.ExitCode == GuestRun.ExpectedPassExitCode(run.Vmm), run.Describe());
        Assert.Null(disk.Compare());
    }
}

/// <summary>The guests under QEMU 7.2 -enable-kvm: proves the drivers (and the tests) right.</summary>
[Collection(QemuGuests.Name)]
public sealed class QemuDiskGuestTests : DiskGuestTests
{
    protected override int FailExitCode => 3; // isa-debug-exit: (1 << 1) | 1

    protected override GuestRunResult Run(DiskGuestOptions options, DiskAttachment disk) => QemuGuests.Run(options, disk);

    protected override GuestRunResult RunOnSecondarySlave(DiskGuestOptions options, DiskAttachment disk)
    {
        QemuGuests.RequireQemu();
        string image = Path.Combine(Path.GetTempPath(), $"csvmm-diskguest-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(image, DiskGuest.Build(options));
        try
        {
            // GuestRun.Qemu puts an IDE disk on the primary master; move it to ide.1 unit 1.
            string[] args = [.. GuestRun.Qemu(image, disk).Select(a =>
                a == "ide-hd,drive=d0,bus=ide.0,unit=0" ? "ide-hd,drive=d0,bus=ide.1,unit=1" : a)];
            return GuestRun.Run(GuestRun.QemuBinary, args, QemuGuests.Timeout);
        }
        finally
        {
            File.Delete(image);
        }
    }
}
