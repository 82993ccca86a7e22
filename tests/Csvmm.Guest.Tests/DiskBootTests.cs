using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Csvmm.Guest.Tests;

/// <summary>
/// The test kernel mounts its root file system read-write from the kit's ext4 disk through csvmm's block devices:
/// virtio-blk (/dev/vda1) and PIIX IDE (/dev/sda1). Each boots a private copy of the disk; afterwards the host checks
/// that the file system is consistent (e2fsck -fn) and that its mount count went up — the kernel's superblock write
/// landed in the file. On this host Linux user space cannot run, so /sbin/init dies, the kernel panics and
/// panic=-1 → reset → --no-reboot ends csvmm.
/// </summary>
public sealed partial class DiskBootTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(240);
    private const long PartitionOffset = 2048 * 512; // build-disk.sh's fixed layout
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-diskboot-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void VirtioBlkRootMountsReadWrite() => BootFromDisk("virtio", "vda",
        "virtio_blk virtio0: [vda] 65536 512-byte logical blocks",
        " vda: vda1");

    [Fact]
    public void VirtioBlkRootMountsOverIntxWhenTheGuestRefusesMsi()
    {
        // pci=nomsi: the driver falls back to INTA# (the slot's _PRT GSI, level-triggered, ISR read-to-clear).
        var run = BootFromDisk("virtio", "vda", ["virtio_blk virtio0: [vda] 65536 512-byte logical blocks", " vda: vda1"],
            extraAppend: " pci=nomsi", extraArgs: ["--log-level", "debug"]);
        Assert.Matches(@"virtio-blk 2: [1-9]\d* requests, .*MSI-X off \(0 delivered\)", run.Stderr);
    }

    [Fact]
    public void IdeRootMountsReadWrite() => BootFromDisk("ide", "sda",
        "scsi host0: ata_piix",
        "ata1: PATA max MWDMA2 cmd 0x1f0 ctl 0x3f6 bmdma 0x",
        "ata1.00: ATA-8: CSVMM HARDDISK",
        "[sda] 65536 512-byte logical blocks",
        " sda: sda1");

    private void BootFromDisk(string bus, string device, params string[] discovery) => BootFromDisk(bus, device, discovery, "", []);

    private CsvmmRun BootFromDisk(string bus, string device, string[] discovery, string extraAppend, string[] extraArgs)
    {
        string disk = Path.Combine(_dir, "disk.img");
        File.Copy(GuestKit.Disk, disk);
        int before = MountCount(disk);

        var run = CsvmmRun.Start(Timeout,
            ["--kernel", Path.Combine(GuestKit.KernelDir, "bzImage"),
            "--append", $"{GuestKit.Cmdline} root=/dev/{device}1 rw rootwait{extraAppend}",
            "--disk", $"{disk},if={bus}", "--memory", "96M", "--no-reboot",
            "--timeout", Timeout.TotalSeconds.ToString(), .. extraArgs]);
        output.WriteLine($"{bus}: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s; stderr: {run.Stderr.Trim()}");
        run.AssertMarkersInOrder([.. discovery, $"EXT4-fs ({device}1): mounted filesystem", "VFS: Mounted root (ext4 filesystem)"]);
        Assert.Equal(0, run.ExitCode);

        int after = MountCount(disk);
        output.WriteLine($"mount count {before} -> {after}");
        Assert.Equal(before + 1, after);
        var (code, text) = Fsck(disk);
        output.WriteLine(text);
        Assert.True(code == 0, $"e2fsck -fn found problems (exit {code}):\n{text}");
        return run;
    }

    /// <summary>The partition as its own file (e2fsprogs tools take a device or file, not an offset).</summary>
    private string ExtractPartition(string disk)
    {
        string part = Path.Combine(_dir, "part.img");
        using var src = File.OpenRead(disk);
        using var dst = File.Create(part);
        src.Position = PartitionOffset;
        src.CopyTo(dst);
        return part;
    }

    private int MountCount(string disk)
    {
        var (code, text) = Tool("dumpe2fs", "-h", ExtractPartition(disk));
        Assert.True(code == 0, $"dumpe2fs failed ({code}): {text}");
        var m = MountCountLine().Match(text);
        Assert.True(m.Success, $"no mount count in dumpe2fs output:\n{text}");
        return int.Parse(m.Groups[1].Value);
    }

    private (int Code, string Text) Fsck(string disk) => Tool("e2fsck", "-fn", ExtractPartition(disk));

    private static (int Code, string Text) Tool(string name, params string[] args)
    {
        string exe = File.Exists($"/usr/sbin/{name}") ? $"/usr/sbin/{name}" : $"/sbin/{name}";
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [GeneratedRegex(@"^Mount count:\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex MountCountLine();
}
