using System.ComponentModel;
using System.Diagnostics;
using Xunit;

namespace Csvmm.TestSupport;

/// <summary>
/// The C compiler as the layout proofs use it: C# mirrors of C structs and constants are checked against the installed
/// headers by compiling <c>_Static_assert</c>s (<see cref="AssertCompiles"/>) or by running a probe that prints values
/// (<see cref="CompileAndRun"/>). Without gcc every such test fails (never skips) with <see cref="MissingMessage"/>.
/// </summary>
public static class Gcc
{
    /// <summary>The one line a layout proof fails with when gcc is not installed.</summary>
    public const string MissingMessage = "gcc is required for the layout proofs: apt-get install build-essential";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>gcc's path on PATH, or null.</summary>
    public static string? Find() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "gcc"))
            .FirstOrDefault(File.Exists);

    /// <summary>gcc's path; fails the test with <see cref="MissingMessage"/> when gcc is not on PATH.</summary>
    public static string Require()
    {
        string? gcc = Find();
        if (gcc is null) Assert.Fail(MissingMessage);
        return gcc;
    }

    /// <summary>
    /// Compiles <paramref name="source"/> with <c>gcc -fsyntax-only -Wall -Werror</c> and fails the test with gcc's
    /// diagnostics (e.g. the failed static asserts) unless it compiles cleanly.
    /// </summary>
    public static void AssertCompiles(string source, string what = "the layout checks")
    {
        string dir = Directory.CreateTempSubdirectory("csvmm-gcc-").FullName;
        try
        {
            string file = Path.Combine(dir, "layout.c");
            File.WriteAllText(file, source);
            var (exit, _, stderr) = Run(Require(), ["-fsyntax-only", "-Wall", "-Werror", file]);
            Assert.True(exit == 0, $"gcc rejected {what}:\n{stderr}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Compiles <paramref name="source"/> (<c>gcc -std=gnu11 -Wall -Werror -O0</c>), runs it, and returns what it
    /// printed; fails the test when it does not compile or exits non-zero.
    /// </summary>
    public static string CompileAndRun(string source, string what = "the layout probe")
    {
        string dir = Directory.CreateTempSubdirectory("csvmm-gcc-").FullName;
        try
        {
            string file = Path.Combine(dir, "probe.c"), exe = Path.Combine(dir, "probe");
            File.WriteAllText(file, source);
            var (gccExit, _, gccErr) = Run(Require(), ["-std=gnu11", "-Wall", "-Werror", "-O0", "-o", exe, file]);
            Assert.True(gccExit == 0, $"gcc could not compile {what}: {FirstErrors(gccErr)}");
            var (exit, stdout, stderr) = Run(exe, []);
            Assert.True(exit == 0, $"{what} exited with status {exit}: {stderr.Trim()}");
            return stdout;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int Exit, string Stdout, string Stderr) Run(string program, string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi)!;
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"{program} could not be started: {e.Message}");
            throw;
        }
        using (process)
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(Timeout))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"{Path.GetFileName(program)} did not finish within {Timeout.TotalSeconds} s");
            }
            return (process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
        }
    }

    private static string FirstErrors(string gccStderr)
    {
        string[] errors = gccStderr.Split('\n')
            .Where(l => l.Contains("error", StringComparison.Ordinal))
            .Select(l => l.Trim())
            .Take(5)
            .ToArray();
        return errors.Length > 0 ? string.Join(" | ", errors) : gccStderr.Trim();
    }
}
