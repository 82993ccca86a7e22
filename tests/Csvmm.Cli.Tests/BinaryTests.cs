using System.Diagnostics;

namespace Csvmm.Cli.Tests;

/// <summary>Runs the published NativeAOT binary (out/csvmm) the way a user does and checks exit codes and messages.</summary>
public class BinaryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "build.sh")) && Directory.Exists(Path.Combine(d.FullName, "src")))
                return d.FullName;
        throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    internal static (int Code, string Stdout, string Stderr) Csvmm(params string[] args)
    {
        string exe = Path.Combine(RepoRoot(), "out", "csvmm");
        Assert.True(File.Exists(exe), $"{exe} is missing: run ./build.sh first");
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

    private static void AssertOneLineError(string stderr, string fragment)
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
