using System.Diagnostics;
using System.Text;

using Csvmm.TestSupport;

namespace Csvmm.Guest.Tests;

/// <summary>The real guests of tests/guest/ (built from Debian packages, cached outside git) and the csvmm binary.</summary>
public static class GuestKit
{
    public static string RepoRoot => RepoPaths.Root;

    public static string Csvmm
    {
        get
        {
            return RepoPaths.Csvmm;
        }
    }

    private static readonly Lazy<string> s_kernelDir = new(() => RunScript("build-kernel.sh"));
    private static readonly Lazy<string> s_initramfs = new(() => RunScript("build-initramfs.sh"));
    private static readonly Lazy<string> s_disk = new(() => RunScript("build-disk.sh"));
    private static readonly Lazy<string> s_bootDisk = new(() => RunScript("build-boot-disk.sh"));
    private static readonly Lazy<string> s_syslinuxDisk = new(() => RunScript("build-syslinux-disk.sh"));

    /// <summary>The kernel cache entry (bzImage, vmlinux, cmdline): built on first use, reused afterwards.</summary>
    public static string KernelDir => s_kernelDir.Value;
    /// <summary>The uncompressed initramfs (no gzip to inflate: every instruction is emulated on this project's hosts).</summary>
    public static string Initramfs => s_initramfs.Value;
    public static string Cmdline => File.ReadAllText(Path.Combine(KernelDir, "cmdline")).Trim();
    /// <summary>The cached test disk (32 MiB, MBR, ext4 partition 1 from 1 MiB). Shared: tests boot a copy.</summary>
    public static string Disk => s_disk.Value;
    /// <summary>The cached BIOS-bootable disk: the test disk with GRUB (i386-pc) and /boot/bzImage. Shared: tests boot a copy.</summary>
    public static string BootDisk => s_bootDisk.Value;
    /// <summary>The cached SYSLINUX disk: FAT16 with SYSLINUX, /bzImage and /initrd (the initramfs). Shared: tests boot a copy.</summary>
    public static string SyslinuxDisk => s_syslinuxDisk.Value;

    /// <summary>Runs a kit script (idempotent; cached) and returns the last line it printed.</summary>
    private static string RunScript(string name)
    {
        string script = Path.Combine(RepoRoot, "tests", "guest", name);
        var psi = new ProcessStartInfo("bash", [script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{name} did not finish within 20 minutes");
        }
        Assert.True(p.ExitCode == 0, $"{name} failed ({p.ExitCode}):\n{stderr.Result}");
        string last = stdout.Result.TrimEnd().Split('\n').Last().Trim();
        Assert.True(Directory.Exists(last) || File.Exists(last), $"{name} printed '{last}', which does not exist");
        return last;
    }

    /// <summary>Host has hardware virtualisation (not an emulating KVM such as kvm_pvm).</summary>
    public static bool HasHardwareKvm =>
        Directory.Exists("/sys/module/kvm_intel") || Directory.Exists("/sys/module/kvm_amd");
}

/// <summary>
/// One run of the csvmm binary with its serial console on stdout and the firmware's debug log (--firmware-log) in
/// <see cref="FirmwareLog"/>.
/// </summary>
public sealed record CsvmmRun(int ExitCode, string Serial, string Stderr, TimeSpan Elapsed)
{
    /// <summary>What the firmware wrote to its debug port (SeaBIOS's log; empty for a kernel boot).</summary>
    public string FirmwareLog { get; init; } = "";

    public static CsvmmRun Start(TimeSpan timeout, params string[] args)
    {
        HostRequirements.RequireKvm("this test boots a real guest");
        var psi = new ProcessStartInfo(GuestKit.Csvmm) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        string firmwareLog = Path.Combine(Path.GetTempPath(), $"csvmm-firmware-{Guid.NewGuid():N}.log");
        psi.ArgumentList.Add("--firmware-log");
        psi.ArgumentList.Add(firmwareLog);
        try
        {
            return Run(psi, timeout) with { FirmwareLog = File.Exists(firmwareLog) ? File.ReadAllText(firmwareLog) : "" };
        }
        finally
        {
            File.Delete(firmwareLog);
        }
    }

    private static CsvmmRun Run(ProcessStartInfo psi, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout + TimeSpan.FromSeconds(30)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"csvmm did not exit within {timeout + TimeSpan.FromSeconds(30)}; serial so far:\n{Tail(stdout)}");
        }
        p.WaitForExit();
        return new CsvmmRun(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }

    private static string Tail(Task<string> t) => t.IsCompleted ? t.Result[^Math.Min(t.Result.Length, 3000)..] : "(not available)";

    /// <summary>Asserts the markers appear in this order in the serial log, with a readable failure.</summary>
    public void AssertMarkersInOrder(params string[] markers) => AssertInOrder("serial", Serial, markers);

    /// <summary>
    /// Asserts the markers appear in this order in the serial log, each as a subsequence (its characters in order,
    /// others in between, within four times its length): for a console two writers share, such as SYSLINUX writing
    /// COM1 itself while SeaBIOS's serial console copies the same text there.
    /// </summary>
    public void AssertInterleavedMarkersInOrder(params string[] markers)
    {
        int at = 0;
        foreach (var m in markers)
        {
            int end = FindSubsequence(Serial, m, at);
            if (end < 0)
            {
                Assert.Fail($"marker \"{m}\" not found (even interleaved) in the serial after offset {at} (exit code {ExitCode}, {Elapsed.TotalSeconds:0} s)\n" +
                    $"--- stderr ---\n{Stderr}\n--- serial after offset {at} ---\n{Serial[at..Math.Min(Serial.Length, at + 1500)]}");
            }
            at = end;
        }
    }

    /// <summary>The end of the first match of <paramref name="marker"/> as a bounded subsequence of <paramref name="text"/> from <paramref name="from"/>, or -1.</summary>
    internal static int FindSubsequence(string text, string marker, int from)
    {
        if (marker.Length == 0) return from;
        for (int start = text.IndexOf(marker[0], from); start >= 0; start = text.IndexOf(marker[0], start + 1))
        {
            int limit = Math.Min(text.Length, start + 4 * marker.Length), j = 1, i = start + 1;
            for (; i < limit && j < marker.Length; i++)
                if (text[i] == marker[j]) j++;
            if (j == marker.Length) return i;
        }
        return -1;
    }

    /// <summary>Asserts the markers appear in this order in the firmware's debug log.</summary>
    public void AssertFirmwareLogInOrder(params string[] markers) => AssertInOrder("firmware log", FirmwareLog, markers);

    private void AssertInOrder(string what, string text, string[] markers)
    {
        int at = 0;
        foreach (var m in markers)
        {
            int i = text.IndexOf(m, at, StringComparison.Ordinal);
            if (i < 0)
            {
                var sb = new StringBuilder();
                sb.AppendLine($"marker \"{m}\" not found in the {what} after offset {at} (exit code {ExitCode}, {Elapsed.TotalSeconds:0} s)");
                sb.AppendLine("--- stderr ---").AppendLine(Stderr);
                sb.AppendLine($"--- {what} after offset {at} ---").AppendLine(text[at..Math.Min(text.Length, at + 1500)]);
                sb.AppendLine($"--- {what} (tail) ---").AppendLine(text[^Math.Min(text.Length, 3000)..]);
                if (!ReferenceEquals(text, Serial)) sb.AppendLine("--- serial (tail) ---").AppendLine(Serial[^Math.Min(Serial.Length, 2000)..]);
                Assert.Fail(sb.ToString());
            }
            at = i + m.Length;
        }
    }
}
