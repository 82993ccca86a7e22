using System.Diagnostics;
using System.Text;

namespace Csvmm.Guest.Tests;

/// <summary>The real guests of tests/guest/ (built from Debian packages, cached outside git) and the csvmm binary.</summary>
public static class GuestKit
{
    public static string RepoRoot { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "build.sh")) && Directory.Exists(Path.Combine(d.FullName, "tests", "guest")))
                return d.FullName;
        throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    public static string Csvmm
    {
        get
        {
            string exe = Path.Combine(RepoRoot, "out", "csvmm");
            Assert.True(File.Exists(exe), $"{exe} is missing: run ./build.sh first");
            return exe;
        }
    }

    private static readonly Lazy<string> s_kernelDir = new(() => RunScript("build-kernel.sh"));
    private static readonly Lazy<string> s_initramfs = new(() => RunScript("build-initramfs.sh"));
    private static readonly Lazy<string> s_disk = new(() => RunScript("build-disk.sh"));

    /// <summary>The kernel cache entry (bzImage, vmlinux, cmdline): built on first use, reused afterwards.</summary>
    public static string KernelDir => s_kernelDir.Value;
    /// <summary>The uncompressed initramfs (no gzip to inflate: every instruction is emulated on this project's hosts).</summary>
    public static string Initramfs => s_initramfs.Value;
    public static string Cmdline => File.ReadAllText(Path.Combine(KernelDir, "cmdline")).Trim();
    /// <summary>The cached test disk (32 MiB, MBR, ext4 partition 1 from 1 MiB). Shared: tests boot a copy.</summary>
    public static string Disk => s_disk.Value;

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

/// <summary>One run of the csvmm binary with its serial console on stdout.</summary>
public sealed record CsvmmRun(int ExitCode, string Serial, string Stderr, TimeSpan Elapsed)
{
    public static CsvmmRun Start(TimeSpan timeout, params string[] args)
    {
        Assert.True(File.Exists("/dev/kvm"), "/dev/kvm is missing: this test needs KVM");
        var psi = new ProcessStartInfo(GuestKit.Csvmm) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
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
    public void AssertMarkersInOrder(params string[] markers)
    {
        int at = 0;
        foreach (var m in markers)
        {
            int i = Serial.IndexOf(m, at, StringComparison.Ordinal);
            if (i < 0)
            {
                var sb = new StringBuilder();
                sb.AppendLine($"marker \"{m}\" not found after offset {at} (exit code {ExitCode}, {Elapsed.TotalSeconds:0} s)");
                sb.AppendLine("--- stderr ---").AppendLine(Stderr);
                sb.AppendLine("--- serial (tail) ---").AppendLine(Serial[^Math.Min(Serial.Length, 4000)..]);
                Assert.Fail(sb.ToString());
            }
            at = i + m.Length;
        }
    }
}
