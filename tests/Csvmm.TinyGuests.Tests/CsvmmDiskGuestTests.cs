using Csvmm.TestSupport;

namespace Csvmm.TinyGuests.Tests;

/// <summary>The csvmm binary (out/csvmm, built by ./build.sh) and how to run a disk guest under it.</summary>
public static class CsvmmGuests
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static string RepoRoot => RepoPaths.Root;

    public static string Binary
    {
        get
        {
            HostRequirements.RequireKvm("the tiny-guest tests boot their disks under csvmm");
            return RepoPaths.Csvmm;
        }
    }

    /// <summary>Runs the guest with <paramref name="disks"/> (given in order) and <paramref name="extra"/> options.</summary>
    public static GuestRunResult Run(DiskGuestOptions options, IReadOnlyList<DiskAttachment> disks, params string[] extra)
    {
        string exe = Binary;
        string image = Path.Combine(Path.GetTempPath(), $"csvmm-diskguest-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(image, DiskGuest.Build(options));
        try
        {
            var args = new List<string>(GuestRun.Csvmm(image, disks.Count > 0 ? disks[0] : null));
            foreach (var d in disks.Skip(1))
            {
                args.Add("--disk");
                args.Add($"{d.Path},if={(d.IsIde ? "ide" : "virtio")}{(d.ReadOnly ? ",readonly=on" : "")}{(d.CacheNone ? ",cache=none" : "")}");
            }
            args.AddRange(extra);
            args.AddRange(["--timeout", ((int)Timeout.TotalSeconds).ToString()]);
            return GuestRun.Run(exe, args, Timeout + TimeSpan.FromSeconds(15));
        }
        finally
        {
            File.Delete(image);
        }
    }
}

/// <summary>The same guests and checks against csvmm's virtio-blk and PIIX IDE, plus what only csvmm can be asked.</summary>
[Collection(QemuGuests.Name)]
public sealed class CsvmmDiskGuestTests : DiskGuestTests
{
    protected override int FailExitCode => 0; // the guest powers off through S5 after printing FAIL

    protected override GuestRunResult Run(DiskGuestOptions options, DiskAttachment disk) => CsvmmGuests.Run(options, [disk]);

    protected override GuestRunResult RunOnSecondarySlave(DiskGuestOptions options, DiskAttachment disk)
    {
        // csvmm places IDE disks in --disk order: primary master, primary slave, secondary master, secondary slave.
        using var a = new ScratchDisk(1);
        using var b = new ScratchDisk(1);
        using var c = new ScratchDisk(1);
        return CsvmmGuests.Run(options,
            [new(a.Path, disk.Interface), new(b.Path, disk.Interface), new(c.Path, disk.Interface), disk]);
    }

    private static GuestRunResult RunExpectingPass(DiskGuestOptions options, params DiskAttachment[] disks)
    {
        GuestRunResult run = CsvmmGuests.Run(options, disks);
        Assert.True(run.Passed && run.ExitCode == 0 && !run.TimedOut, run.Describe());
        return run;
    }

    [Theory]
    [InlineData(DiskInterface.IdePio)]
    [InlineData(DiskInterface.IdeDma)]
    public void WriteToReadOnlyIdeDiskFailsInTheGuestAndLeavesTheFileUnchanged(DiskInterface iface)
    {
        using var disk = new ScratchDisk();
        byte[] before = disk.Hash();
        var options = new DiskGuestOptions
        {
            Interface = iface,
            Operations = [DiskOp.ReadVerify(0, 16, ScratchDisk.FillSeed), DiskOp.WriteExpectFailure(10, 4, 0x1234),
                DiskOp.ReadVerify(8, 8, ScratchDisk.FillSeed)],
        };
        GuestRunResult run = RunExpectingPass(options, new DiskAttachment(disk.Path, iface, ReadOnly: true));
        Assert.Contains(run.Lines, l => l.Text.StartsWith("OK write-failed", StringComparison.Ordinal));
        Assert.Equal(before, disk.Hash());
    }

    [Fact]
    public void TwoDisksOnBothBusesAtOnce()
    {
        // A virtio disk and an IDE disk in one VM: the guest drives the virtio one; the IDE one sits at 00:01.1.
        using var v = new ScratchDisk();
        using var i = new ScratchDisk(1);
        var options = new DiskGuestOptions
        {
            Interface = DiskInterface.Virtio,
            Operations = [DiskOp.Write(5, 9, 0x99), DiskOp.Flush(), DiskOp.ReadVerify(5, 9, 0x99), DiskOp.ReadVerify(14, 50, ScratchDisk.FillSeed)],
        };
        v.ExpectWrite(5, 9, 0x99);
        RunExpectingPass(options, new DiskAttachment(i.Path, DiskInterface.IdeDma), new DiskAttachment(v.Path, DiskInterface.Virtio));
        Assert.Equal(i.Expected, File.ReadAllBytes(i.Path));
        Assert.Null(v.Compare());
    }
}

/// <summary>
/// The SELinux entrypoint gate end to end (issue 4): in enforcing mode an allowed disk boots and the guest reads it;
/// a denied one stops csvmm with exit code 6 and the AVC line before the VM exists — the guest never runs.
/// </summary>
[Collection(QemuGuests.Name)]
public sealed class CsvmmSelinuxGateGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-fc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A root-owned file_contexts (tests run as root, as csvmm requires of it) labelling exactly <paramref name="path"/>.</summary>
    private string FileContexts(string path, string type)
    {
        string fc = Path.Combine(_dir, "file_contexts");
        File.WriteAllText(fc, $"{System.Text.RegularExpressions.Regex.Escape(path)} system_u:object_r:{type}\n");
        return fc;
    }

    private static DiskGuestOptions ReadGuest => new()
    {
        Interface = DiskInterface.Virtio,
        Operations = [DiskOp.ReadVerify(0, 64, ScratchDisk.FillSeed)],
    };

    [Fact]
    public void AllowedDiskBootsAndTheGuestReadsIt()
    {
        using var disk = new ScratchDisk();
        var run = CsvmmGuests.Run(ReadGuest, [new(disk.Path, DiskInterface.Virtio)],
            "--selinux", "enforcing", "--file-contexts", FileContexts(disk.Path, "qemu_virtdisk_t"));
        Assert.True(run.Passed && run.ExitCode == 0, run.Describe());
        Assert.Contains("OK read", run.Serial);
        Assert.DoesNotContain("denied", run.Stderr);
    }

    [Fact]
    public void DeniedDiskStopsCsvmmBeforeTheGuestRuns()
    {
        using var disk = new ScratchDisk();
        byte[] before = disk.Hash();
        var run = CsvmmGuests.Run(ReadGuest, [new(disk.Path, DiskInterface.Virtio)],
            "--selinux", "enforcing", "--file-contexts", FileContexts(disk.Path, "untrusted_disk_t"));
        Assert.True(run.ExitCode == 6, run.Describe());
        Assert.Contains("avc:  denied", run.Stderr);
        Assert.Contains("system_u:object_r:untrusted_disk_t", run.Stderr);
        Assert.Contains("permissive=0", run.Stderr);
        Assert.Empty(run.Lines);                 // no firmware ran: the VM was never created
        Assert.Equal(before, disk.Hash());
    }

    [Fact]
    public void PermissiveModeLogsTheDenialAndTheGuestRuns()
    {
        using var disk = new ScratchDisk();
        var run = CsvmmGuests.Run(ReadGuest, [new(disk.Path, DiskInterface.Virtio)],
            "--selinux", "permissive", "--file-contexts", FileContexts(disk.Path, "untrusted_disk_t"));
        Assert.True(run.Passed && run.ExitCode == 0, run.Describe());
        Assert.Contains("avc:  denied", run.Stderr);
        Assert.Contains("permissive=1", run.Stderr);
    }
}
