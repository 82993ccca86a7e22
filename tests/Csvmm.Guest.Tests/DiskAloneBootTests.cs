using Xunit.Abstractions;

namespace Csvmm.Guest.Tests;

/// <summary>
/// <c>csvmm --disk IMAGE</c>, nothing else: the built-in firmware (SeaBIOS, configured through csvmm's fw_cfg) boots
/// the kit's GRUB disk (tests/guest/build-boot-disk.sh), GRUB loads /boot/bzImage from the ext4 partition through
/// the BIOS disk services, and the kernel mounts that partition as its root — on IDE and on virtio-blk. The kernel
/// must find csvmm's own ACPI tables (OEM "CSVMM", installed by SeaBIOS from fw_cfg's table loader), not SeaBIOS's.
/// </summary>
public sealed class DiskAloneBootTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(360);
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-fwboot-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string CopyOfBootDisk()
    {
        string disk = Path.Combine(_dir, "boot.img");
        File.Copy(GuestKit.BootDisk, disk);
        return disk;
    }

    private static readonly string[] KernelMarkers =
    [
        "csvmm-grub: loading the kernel",
        "csvmm-grub: booting",
        "Linux version",
        "(v02 CSVMM )",                               // ACPI: RSDP ... csvmm's tables, through the table loader
        "VFS: Mounted root (ext4 filesystem)",
    ];

    [Fact]
    public void DiskAloneOnIdeBootsThroughFirmwareAndGrubToTheMountedRoot()
    {
        var run = CsvmmRun.Start(Timeout, "--disk", $"{CopyOfBootDisk()},if=ide", "--memory", "96M", "--no-reboot",
            "--timeout", Timeout.TotalSeconds.ToString());
        output.WriteLine($"ide: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s; stderr: {run.Stderr.Trim()}");
        run.AssertFirmwareLogInOrder("SeaBIOS (version", "Found QEMU fw_cfg", "QEMU fw_cfg DMA interface supported",
            "ata0-0: CSVMM HARDDISK", "Booting from Hard Disk...");
        // The console the user sees: SeaBIOS's serial console (sercon, turned on through fw_cfg), then GRUB and Linux.
        run.AssertMarkersInOrder(["SeaBIOS (version", "Booting from Hard Disk...", .. KernelMarkers]);
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public void BootOrderFollowsTheDiskOptions()
    {
        // A blank IDE disk would be SeaBIOS's first hard disk by default; fw_cfg's bootorder names the virtio disk
        // first because it was given first, so firmware never tries the blank one.
        string blank = Path.Combine(_dir, "blank.img");
        using (var f = File.Create(blank)) f.SetLength(4 << 20);
        var run = CsvmmRun.Start(Timeout, "--disk", CopyOfBootDisk(), "--disk", $"{blank},if=ide", "--memory", "96M",
            "--no-reboot", "--timeout", Timeout.TotalSeconds.ToString());
        output.WriteLine($"virtio first: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s; stderr: {run.Stderr.Trim()}");
        run.AssertFirmwareLogInOrder("found virtio-blk at 00:02.0", "Booting from Hard Disk...");
        run.AssertMarkersInOrder(["Booting from Hard Disk...", .. KernelMarkers]);
        Assert.DoesNotContain("Boot failed", run.Serial);
        Assert.DoesNotContain("Boot failed", run.FirmwareLog);
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public void SyslinuxGetsPastItsIretdAndLoadsTheKernel()
    {
        // SYSLINUX leaves real mode with a 32-bit iretd, which an emulating KVM such as kvm_pvm cannot run: csvmm's
        // emulation fallback carries it out (hardware KVM runs it natively). Then the kernel and initramfs it loaded
        // from FAT boot to init.
        string disk = Path.Combine(_dir, "syslinux.img");
        File.Copy(GuestKit.SyslinuxDisk, disk);
        var run = CsvmmRun.Start(Timeout, "--disk", $"{disk},if=ide", "--memory", "96M", "--no-reboot",
            "--timeout", Timeout.TotalSeconds.ToString(), "--log-level", "information");
        output.WriteLine($"syslinux: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s; stderr: {run.Stderr.Trim()}");
        run.AssertInterleavedMarkersInOrder("Booting from Hard Disk...", "SYSLINUX 6.04", "csvmm-syslinux: loading the kernel");
        run.AssertMarkersInOrder("Linux version", "(v02 CSVMM )", "Run /init as init process");
        Assert.Equal(0, run.ExitCode);
        if (!GuestKit.HasHardwareKvm) Assert.Matches(@"emulated \d+ instructions KVM could not run: .*iretd [1-9]", run.Stderr); // the fallback's count at exit
    }
}
