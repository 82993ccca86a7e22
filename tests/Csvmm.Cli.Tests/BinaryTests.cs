using System.Diagnostics;

using Csvmm.TestSupport;

namespace Csvmm.Cli.Tests;

/// <summary>Runs the published NativeAOT binary (out/csvmm) the way a user does and checks exit codes and messages.</summary>
public class BinaryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static string RepoRoot() => RepoPaths.Root;

    internal static (int Code, string Stdout, string Stderr) Csvmm(params string[] args) => CsvmmAt(RepoPaths.Csvmm, args);

    internal static (int Code, string Stdout, string Stderr) CsvmmAt(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"csvmm {string.Join(' ', args)} did not exit within 60 s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    internal static void AssertOneLineError(string stderr, string fragment)
    {
        Assert.Contains(fragment, stderr);
        Assert.StartsWith("csvmm: ", stderr);
        Assert.DoesNotContain("   at ", stderr);           // no stack trace
        Assert.DoesNotContain("Exception", stderr);
        var lines = stderr.TrimEnd().Split('\n');
        Assert.True(lines.Length <= 2, "expected a one-line error (plus an optional hint), got:\n" + stderr);
    }

    private string WriteFile(string name, byte[] content)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, content);
        return p;
    }

    [Fact]
    public void HelpListsTheOptions()
    {
        var (code, stdout, _) = Csvmm("--help");
        Assert.Equal(0, code);
        foreach (var o in new[] { "--kernel", "--initrd", "--append", "--firmware", "--disk", "--memory", "--cpus", "--serial", "--no-reboot", "--log-level", "--log-file" })
            Assert.Contains(o, stdout);
    }

    [Fact]
    public void MissingKernelIsBadInput()
    {
        var (code, _, stderr) = Csvmm("--kernel", Path.Combine(_dir, "nope.bzImage"));
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "No such file or directory");
    }

    [Fact]
    public void DirectoryAsKernelIsBadInput()
    {
        var (code, _, stderr) = Csvmm("--kernel", _dir);
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "is a directory");
    }

    [Fact]
    public void EmptyKernelIsBadInput()
    {
        var (code, _, stderr) = Csvmm("--kernel", WriteFile("empty", []));
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "empty");
    }

    [Fact]
    public void TextFileAsKernelIsBadInput()
    {
        var path = WriteFile("kernel.txt", System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("this is not a kernel\n", 400))));
        var (code, _, stderr) = Csvmm("--kernel", path, "--memory", "64M");
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "kernel.txt");
    }

    [Fact]
    public void DiskAloneWithoutTheBuiltInFirmwareIsBadInput()
    {
        // A copy of the binary with no firmware/ beside it: the disk would be booted by firmware that is not there.
        string bin = Directory.CreateDirectory(Path.Combine(_dir, "bin")).FullName;
        string exe = Path.Combine(bin, "csvmm");
        File.Copy(RepoPaths.Csvmm, exe);
        File.SetUnixFileMode(exe, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        var disk = WriteFile("disk.img", new byte[1 << 20]);
        var (code, _, stderr) = CsvmmAt(exe, "--disk", disk);
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "built-in firmware");
        Assert.Contains(Path.Combine(bin, "firmware", "bios.bin"), stderr);
    }

    [Fact]
    public void BuiltInFirmwareIsInstalledBesideTheBinary()
    {
        // ./build.sh (firmware/build.sh) puts SeaBIOS there; csvmm --disk IMG boots with it.
        string fw = Path.Combine(Path.GetDirectoryName(RepoPaths.Csvmm)!, "firmware", "bios.bin");
        Assert.True(File.Exists(fw), $"{fw} is missing: ./build.sh installs it");
        long size = new FileInfo(fw).Length;
        Assert.True(size > 0 && size % 65536 == 0, $"{fw}: {size} bytes is not a BIOS image size");
        Assert.Equal(File.ReadAllBytes("/usr/share/seabios/bios-256k.bin"), File.ReadAllBytes(fw));
    }

    [Fact]
    public void QmpPathHoldingARegularFileIsAUsageErrorAndTheFileIsKept()
    {
        var file = WriteFile("not-a-socket", "keep"u8.ToArray());
        var (code, _, stderr) = Csvmm("--firmware", "/usr/share/seabios/bios-256k.bin", "--memory", "64M", "--qmp", $"unix:{file}");
        Assert.Equal(2, code);
        AssertOneLineError(stderr, "is not a socket");
        Assert.Equal("keep", File.ReadAllText(file));
    }

    [Fact]
    public void IncomingSnapshotThatIsMissingOrCorruptIsBadInput()
    {
        var (code, _, stderr) = Csvmm("--incoming", $"file:{Path.Combine(_dir, "none.snap")}");
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "none.snap");

        var junk = WriteFile("junk.snap", System.Text.Encoding.ASCII.GetBytes(new string('x', 5000)));
        (code, _, stderr) = Csvmm("--incoming", $"file:{junk}");
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "not a usable csvmm snapshot: bad magic");
    }

    [Fact]
    public void TextFileAsFirmwareIsBadInput()
    {
        var path = WriteFile("bios.txt", System.Text.Encoding.ASCII.GetBytes("#!/bin/sh\necho not a bios\n"));
        var (code, _, stderr) = Csvmm("--firmware", path, "--memory", "64M");
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "bios.txt");
    }

    [Fact]
    public void MissingInitrdIsBadInput()
    {
        var kernel = WriteFile("k", new byte[4096]);
        var (code, _, stderr) = Csvmm("--kernel", kernel, "--initrd", Path.Combine(_dir, "missing.cpio"));
        Assert.Equal(3, code);
        AssertOneLineError(stderr, "initrd");
    }

    [Theory]
    [InlineData("--memory", "0")]
    [InlineData("--memory", "10T")]
    [InlineData("--memory", "abc")]
    [InlineData("--cpus", "0")]
    [InlineData("--cpus", "5000")]
    [InlineData("--cpus", "many")]
    public void NonsenseValuesAreUsageErrors(string option, string value)
    {
        var fw = WriteFile("fw.bin", new byte[65536]);
        var (code, _, stderr) = Csvmm("--firmware", fw, option, value);
        Assert.Equal(2, code);
        AssertOneLineError(stderr, option == "--cpus" && value == "many" ? "many" : option);
    }

    [Fact]
    public void UnknownOptionIsAUsageError()
    {
        var (code, _, stderr) = Csvmm("--frobnicate");
        Assert.Equal(2, code);
        AssertOneLineError(stderr, "--frobnicate");
    }
}

/// <summary>The binary running real (tiny) firmware images: exit codes for crashes, signals, timeouts, KVM errors, logging.</summary>
public class BinaryGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-cli-guest-").FullName;

    /// <summary>Every test here but <see cref="MissingKvmDeviceIsTheKvmExitCode"/> boots a guest.</summary>
    private static void RequireKvm() => HostRequirements.RequireKvm("the binary's guest tests boot firmware under csvmm");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A 64 KiB BIOS image whose reset vector (offset 0xFFF0) holds <paramref name="resetCode"/>.</summary>
    private string Firmware(string name, params byte[] resetCode)
    {
        var image = new byte[65536];
        resetCode.CopyTo(image, 0xFFF0);
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, image);
        return p;
    }

    // F000:FFF0: lidt cs:[0xFFE0] (6 zero bytes: limit 0) ; ud2  →  #UD cannot be delivered → triple fault
    private static readonly byte[] TripleFault = [0x2E, 0x0F, 0x01, 0x1E, 0xE0, 0xFF, 0x0F, 0x0B];
    // F000:FFF0: jmp $
    private static readonly byte[] SpinForever = [0xEB, 0xFE];
    // F000:FFF0: mov dx,0x604 ; mov ax,0x3400 ; out dx,ax  →  ACPI S5
    private static readonly byte[] PowerOff = [0xBA, 0x04, 0x06, 0xB8, 0x00, 0x34, 0xEF, 0xF4];

    /// <summary>
    /// Offset 0: reads port 0x402 and prints the byte on COM1, writes "fw\n" to 0x402, powers off; the reset vector
    /// jumps there (far jmp F000:0000).
    /// </summary>
    private string DebugPortFirmware()
    {
        byte[] code =
        [
            0xBA, 0x02, 0x04, 0xEC,             // mov dx,0x402 ; in al,dx
            0xBA, 0xF8, 0x03, 0xEE,             // mov dx,0x3f8 ; out dx,al
            0xBA, 0x02, 0x04,                   // mov dx,0x402
            0xB0, (byte)'f', 0xEE, 0xB0, (byte)'w', 0xEE, 0xB0, (byte)'\n', 0xEE,
            .. PowerOff,
        ];
        string p = Firmware("debugport.bin", 0xEA, 0x00, 0x00, 0x00, 0xF0);
        using (var f = File.OpenWrite(p)) f.Write(code);
        return p;
    }

    [Fact]
    public void FirmwareLogGetsTheDebugPortAndComOneDoesNot()
    {
        RequireKvm();
        string fw = DebugPortFirmware(), serial = Path.Combine(_dir, "com1"), log = Path.Combine(_dir, "fw.log");
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", fw, "--memory", "16M", "--serial", $"file:{serial}", "--firmware-log", log);
        Assert.True(code == 0, stderr);
        Assert.Equal("fw\n", File.ReadAllText(log));
        Assert.Equal([0xE9], File.ReadAllBytes(serial));      // QEMU's debugcon read-back: firmware may log

        File.Delete(serial);
        (code, _, stderr) = BinaryTests.Csvmm("--firmware", fw, "--memory", "16M", "--serial", $"file:{serial}");
        Assert.True(code == 0, stderr);
        Assert.Equal([0xFF], File.ReadAllBytes(serial));      // no port without --firmware-log: nothing listens
    }

    [Fact]
    public void FirmwareLogThatCannotBeCreatedIsBadInput()
    {
        string fw = DebugPortFirmware();
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", fw, "--memory", "16M", "--firmware-log", Path.Combine(_dir, "no", "such", "dir", "fw.log"));
        Assert.Equal(3, code);
        BinaryTests.AssertOneLineError(stderr, "--firmware-log");
    }

    [Fact]
    public void PowerOffExitsZero()
    {
        RequireKvm();
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", Firmware("off.bin", PowerOff), "--memory", "16M");
        Assert.True(code == 0, stderr);
    }

    [Fact]
    public void CrashingGuestIsReportedWithDisassemblyAndTheCrashCode()
    {
        RequireKvm();
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", Firmware("tf.bin", TripleFault), "--memory", "16M");
        Assert.Equal(5, code);
        // Hardware KVM triple-faults; an emulating KVM (kvm_pvm) fails to emulate the #UD delivery. Both are crashes.
        Assert.Matches("triple fault|emulation failure", stderr);
        Assert.Contains("mode: real mode", stderr);
        Assert.Contains("rip=", stderr);
        Assert.Contains("ud2", stderr);          // Iced's disassembly of the faulting instruction
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public void TimeoutStopsASpinningGuest()
    {
        RequireKvm();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", Firmware("spin.bin", SpinForever), "--memory", "16M", "--timeout", "1");
        Assert.Equal(7, code);
        Assert.Contains("timeout", stderr);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
    }

    [Theory]
    [InlineData(15, 143)]
    [InlineData(2, 130)]
    public void SignalsStopTheGuestCleanly(int signal, int expectedCode)
    {
        RequireKvm();
        string exe = Path.Combine(BinaryTests.RepoRoot(), "out", "csvmm");
        var psi = new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in new[] { "--firmware", Firmware($"spin{signal}.bin", SpinForever), "--memory", "16M", "--timeout", "60" })
            psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        Thread.Sleep(1500); // let the vCPU enter its endless loop
        Assert.Equal(0, kill(p.Id, signal));
        Assert.True(p.WaitForExit(15_000), "csvmm did not stop after the signal");
        Assert.Equal(expectedCode, p.ExitCode);
        Assert.Contains($"terminated by signal {signal}", p.StandardError.ReadToEnd());
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    [Fact]
    public void MissingKvmDeviceIsTheKvmExitCode()
    {
        string exe = Path.Combine(BinaryTests.RepoRoot(), "out", "csvmm");
        var psi = new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "--firmware", Firmware("off2.bin", PowerOff) }) psi.ArgumentList.Add(a);
        psi.Environment["CSVMM_KVM_DEVICE"] = "/dev/no-such-kvm";
        using var p = System.Diagnostics.Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(4, p.ExitCode);
        Assert.StartsWith("csvmm: cannot open /dev/no-such-kvm", err);
        Assert.Contains("is the kvm module loaded", err);
    }

    [Fact]
    public void LogFileIsJsonLines()
    {
        RequireKvm();
        string log = Path.Combine(_dir, "log.json");
        var (code, _, _) = BinaryTests.Csvmm("--firmware", Firmware("off3.bin", PowerOff), "--memory", "16M", "--log-level", "debug", "--log-file", log);
        Assert.Equal(0, code);
        var lines = File.ReadAllLines(log).Where(l => l.Length > 0).ToArray();
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            Assert.True(doc.RootElement.TryGetProperty("@t", out _));
        }
        Assert.Contains(lines, l => l.Contains("ACPI S5"));
    }
}

/// <summary>--disk is opened, validated and locked before the VM starts (block devices follow in the next slice).</summary>
public class BinaryDiskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-cli-disk-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Firmware(params byte[] resetCode)
    {
        var image = new byte[65536];
        resetCode.CopyTo(image, 0xFFF0);
        string p = Path.Combine(_dir, $"fw-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(p, image);
        return p;
    }

    private string Disk(string name, int size)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, new byte[size]);
        return p;
    }

    private static readonly byte[] PowerOff = [0xBA, 0x04, 0x06, 0xB8, 0x00, 0x34, 0xEF, 0xF4];

    [Theory]
    [InlineData("missing", "No such file or directory")]
    [InlineData("directory", "directory")]
    [InlineData("empty", "empty")]
    [InlineData("odd", "not a multiple of 512")]
    [InlineData("chardev", "/dev/null")]
    public void BadDiskIsOneLineBeforeTheVmStarts(string kind, string fragment)
    {
        string path = kind switch
        {
            "missing" => Path.Combine(_dir, "nope.img"),
            "directory" => _dir,
            "empty" => Disk("empty.img", 0),
            "odd" => Disk("odd.img", 1000),
            _ => "/dev/null",
        };
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", Firmware(PowerOff), "--memory", "16M", "--disk", path);
        Assert.Equal(3, code);
        Assert.StartsWith("csvmm: ", stderr);
        Assert.Contains(fragment, stderr);
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void SecondWriterOfAnImageIsRefusedWhileReadersShare()
    {
        string img = Disk("shared.img", 1 << 20);
        string exe = Path.Combine(BinaryTests.RepoRoot(), "out", "csvmm");
        var psi = new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in new[] { "--firmware", Firmware(0xEB, 0xFE), "--memory", "16M", "--timeout", "30", "--disk", img })
            psi.ArgumentList.Add(a);
        using var first = System.Diagnostics.Process.Start(psi)!;
        try
        {
            Thread.Sleep(1500); // the first VM holds its write lock while it runs
            if (first.HasExited) Assert.Fail("the first csvmm ended early: " + first.StandardError.ReadToEnd());

            var (code, _, stderr) = BinaryTests.Csvmm("--firmware", Firmware(PowerOff), "--memory", "16M", "--disk", img);
            Assert.Equal(3, code);
            Assert.Contains("in use by another process", stderr);

            var (roCode, _, roErr) = BinaryTests.Csvmm("--firmware", Firmware(PowerOff), "--memory", "16M", "--disk", img + ",readonly=on");
            Assert.Equal(3, roCode); // a reader is refused too while a writer holds the image
            Assert.Contains("in use by another process", roErr);
        }
        finally
        {
            first.Kill();
            first.WaitForExit();
        }
        var (after, _, afterErr) = BinaryTests.Csvmm("--firmware", Firmware(PowerOff), "--memory", "16M", "--disk", img);
        Assert.True(after == 0, afterErr); // the lock went away with the first process
    }
}
