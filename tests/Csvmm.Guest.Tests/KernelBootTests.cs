using Xunit.Abstractions;

namespace Csvmm.Guest.Tests;

/// <summary>
/// The test kernel (Debian's linux-source 6.1, tinyconfig + csvmm's platform) booted by the csvmm binary. On this
/// project's emulating KVM hosts Linux user space cannot run, so the boot is proven by kernel log markers; the guest
/// ends through panic=-1 → reset → csvmm exits 0 (--no-reboot). One class: the boots run one after the other.
/// </summary>
public class KernelBootTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(240);

    private void Log(CsvmmRun run, string what) =>
        output.WriteLine($"{what}: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s; stderr: {run.Stderr.Trim()}");

    [Fact]
    public void BzImageBootsToInitWithTwoCpusAndExitsOnReset()
    {
        var run = CsvmmRun.Start(Timeout,
            "--kernel", Path.Combine(GuestKit.KernelDir, "bzImage"), "--initrd", GuestKit.Initramfs,
            "--append", GuestKit.Cmdline, "--cpus", "2", "--memory", "96M", "--no-reboot",
            "--timeout", Timeout.TotalSeconds.ToString());
        Log(run, "bzImage");
        run.AssertMarkersInOrder(
            "Linux version 6.1",
            "ACPI: RSDP 0x00000000000E0000",   // csvmm's tables found where csvmm put them
            "ACPI: XSDT",
            "ACPI: FACP",
            "ACPI: DSDT",
            "ACPI: APIC",
            "ACPI: Using ACPI (MADT) for SMP configuration information",
            "smp: Brought up 1 node, 2 CPUs",  // both vCPUs came up (INIT/SIPI through the in-kernel LAPIC)
            "ACPI: Interpreter enabled",
            "ACPI: PCI Root Bridge [PCI0]",
            "pci 0000:00:00.0: [8086:1237]",   // i440FX host bridge through 0xCF8/0xCFC
            "ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
            "Freeing initrd memory",
            "Run /init as init process");
        Assert.DoesNotContain("MP-BIOS bug", run.Serial); // the PIT reaches IOAPIC pin 2 as the MADT says
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public void PvhVmlinuxBootsToInit()
    {
        var run = CsvmmRun.Start(Timeout,
            "--kernel", Path.Combine(GuestKit.KernelDir, "vmlinux"), "--initrd", GuestKit.Initramfs,
            "--append", GuestKit.Cmdline, "--memory", "64M", "--no-reboot",
            "--timeout", Timeout.TotalSeconds.ToString());
        Log(run, "PVH vmlinux");
        run.AssertMarkersInOrder(
            "Linux version 6.1",
            "ACPI: RSDP 0x00000000000E0000",
            "ttyS0 at I/O 0x3f8",
            "Run /init as init process");
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public void KernelWithItsInt3SelfTestBootsToInit()
    {
        // Linux's int3_selftest() runs an int3 at CPL0 and expects its handler to be called; an emulating KVM such as
        // kvm_pvm cannot deliver it (QEMU stops there with an emulation failure). csvmm's fallback injects it.
        var run = CsvmmRun.Start(Timeout,
            "--kernel", Path.Combine(GuestKit.KernelDir, "bzImage-int3-selftest"), "--initrd", GuestKit.Initramfs,
            "--append", GuestKit.Cmdline, "--memory", "64M", "--no-reboot", "--log-level", "information",
            "--timeout", Timeout.TotalSeconds.ToString());
        Log(run, "bzImage-int3-selftest");
        run.AssertMarkersInOrder("Linux version 6.1", "ttyS0 at I/O 0x3f8", "Run /init as init process");
        Assert.DoesNotContain("kernel BUG", run.Serial);      // the self-test's BUG_ON when the handler did not run
        Assert.Equal(0, run.ExitCode);
        if (!GuestKit.HasHardwareKvm) Assert.Matches(@"emulated \d+ instructions KVM could not run: .*int3 [1-9]", run.Stderr);
    }

    [SkippableFact]
    public void StockDebianCloudKernelReachesUserSpaceAndPowersOff()
    {
        Skip.IfNot(GuestKit.HasHardwareKvm, "needs hardware KVM (kvm_intel or kvm_amd): this host's KVM emulates guest kernel code and cannot run Linux user space");
        string? kernel = Directory.Exists("/boot")
            ? Directory.GetFiles("/boot", "vmlinuz-*-cloud-amd64").OrderBy(f => f).LastOrDefault()
            : null;
        Assert.True(kernel is not null, "linux-image-cloud-amd64 is not installed (./build.sh installs it on hosts with hardware KVM)");
        string initramfsGz = Path.ChangeExtension(GuestKit.Initramfs, ".cpio.gz");
        var run = CsvmmRun.Start(TimeSpan.FromSeconds(120),
            "--kernel", kernel!, "--initrd", File.Exists(initramfsGz) ? initramfsGz : GuestKit.Initramfs,
            "--append", "console=ttyS0 panic=-1", "--cpus", "2", "--memory", "512M", "--no-reboot", "--timeout", "120");
        Log(run, "stock cloud kernel");
        run.AssertMarkersInOrder("Linux version", "Run /init as init process", "csvmm-guest: init started", "csvmm-guest: proc, sys and dev mounted");
        Assert.Equal(0, run.ExitCode); // poweroff -f → ACPI S5 → csvmm exits 0
    }
}

/// <summary>Real firmware: Debian's SeaBIOS POSTs on csvmm's platform through the --firmware path (reset vector, ROM below 4 GiB).</summary>
public class FirmwareBootTests(ITestOutputHelper output)
{
    [Fact]
    public void SeaBiosPostsToNoBootableDevice()
    {
        const string bios = "/usr/share/seabios/bios-256k.bin";
        Assert.True(File.Exists(bios), $"{bios} is missing: ./build.sh installs the seabios package");
        var run = CsvmmRun.Start(TimeSpan.FromSeconds(60),
            "--firmware", bios, "--memory", "64M", "--cpus", "2", "--timeout", "60"); // SeaBIOS then waits 60 s to retry
        output.WriteLine($"SeaBIOS: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s");
        // SeaBIOS's debug output goes to port 0x402, which csvmm writes to the --firmware-log file.
        run.AssertFirmwareLogInOrder(
            "SeaBIOS (version",
            "Running on KVM",
            "Found QEMU fw_cfg",                      // csvmm's fw_cfg at 0x510
            "QEMU fw_cfg DMA interface supported",
            "qemu/e820: addr 0x0000000000000000 len 0x0000000004000000 [RAM]", // csvmm's etc/e820 (SeaBIOS then skips CMOS)
            "PCI: init bdf=00:00.0 id=8086:1237",     // i440FX host bridge through 0xCF8/0xCFC
            "PCI: init bdf=00:01.0 id=8086:7000",     // PIIX3 ISA bridge
            "Found 2 cpu(s)",                          // the AP answered SeaBIOS's INIT/SIPI
            "No bootable device.");
    }

    [Fact]
    public void SeaBiosFindsTheIdeAndVirtioDisksAndReadsTheBootSector()
    {
        const string bios = "/usr/share/seabios/bios-256k.bin";
        Assert.True(File.Exists(bios), $"{bios} is missing: ./build.sh installs the seabios package");
        string dir = Directory.CreateTempSubdirectory("csvmm-seabios-").FullName;
        try
        {
            string ide = Path.Combine(dir, "ide.img"), virtio = Path.Combine(dir, "virtio.img");
            foreach (var f in new[] { ide, virtio })
                using (var s = File.Create(f)) s.SetLength(2 << 20); // zeroes: no boot signature
            var run = CsvmmRun.Start(TimeSpan.FromSeconds(60),
                "--firmware", bios, "--memory", "64M", "--disk", $"{ide},if=ide", "--disk", virtio, "--timeout", "60");
            output.WriteLine($"SeaBIOS with disks: exit {run.ExitCode} after {run.Elapsed.TotalSeconds:0.0} s");
            run.AssertFirmwareLogInOrder(
                "PCI: init bdf=00:01.1 id=8086:7010",     // PIIX3 IDE
                "PCI: init bdf=00:02.0 id=1af4:1042",     // virtio-blk (modern)
                "ata0-0: CSVMM HARDDISK ATA-8 Hard-Disk (2 MiBytes)",
                "found virtio-blk at 00:02.0",
                "using modern (1.0) virtio mode",
                "Booting from Hard Disk...",
                "Boot failed: not a bootable disk",       // it read sector 0 and found no 0x55AA
                "No bootable device.");
            Assert.DoesNotContain("is unsupported", run.FirmwareLog);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
