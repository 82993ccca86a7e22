using System.Diagnostics;
using Csvmm.Security;

using Csvmm.TestSupport;

namespace Csvmm.Security.Tests;

/// <summary>Runs a command-line tool and captures its output.</summary>
internal static class Tool
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    public static async Task<Result> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{file} is not installed ({e.Message}); ./build.sh installs it", e);
        }
        using (p)
        {
            Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await p.WaitForExitAsync(timeout.Token);
            return new Result(p.ExitCode, await stdout, await stderr);
        }
    }

    public static Result Run(string file, params string[] args) => RunAsync(file, args).GetAwaiter().GetResult();

    public static Result RunChecked(string file, params string[] args)
    {
        var r = Run(file, args);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({r.ExitCode}): {r.StdErr}{r.StdOut}");
        return r;
    }
}

/// <summary>
/// Builds the standalone policy with the real policy/build.sh (into a temporary directory), plus the
/// test-only policies, once for all libsepol tests; deletes them afterwards.
/// </summary>
public sealed class PolicyFixture : IDisposable
{
    public PolicyFixture()
    {
        RepoRoot = RepoPaths.Root;
        Directory = System.IO.Directory.CreateTempSubdirectory("csvmm-policy-").FullName;
        Tool.RunChecked("bash", Path.Combine(RepoRoot, "policy", "build.sh"), Path.Combine(Directory, "standalone"));
        PolicyPath = Path.Combine(Directory, "standalone", "policy.33");
        FileContextsPath = Path.Combine(Directory, "standalone", "file_contexts");
        NoVmPolicyPath = Compile("novm.cil");
        ConstrainedPolicyPath = Compile("constrained.cil");
    }

    public string RepoRoot { get; }
    public string Directory { get; }
    /// <summary>The standalone policy as policy/build.sh compiles it.</summary>
    public string PolicyPath { get; }
    /// <summary>policy/file_contexts as policy/build.sh installs it.</summary>
    public string FileContextsPath { get; }
    /// <summary>A complete policy without class vm.</summary>
    public string NoVmPolicyPath { get; }
    /// <summary>A policy whose file read is denied by a constraint.</summary>
    public string ConstrainedPolicyPath { get; }

    /// <summary>The engine of the standalone policy, (re)loaded if another test loaded something else since.</summary>
    public SepolEngine Engine
    {
        get
        {
            lock (this)
            {
                if (_engine is null || !_engine.IsCurrent)
                    _engine = SepolEngine.Load(PolicyPath);
                return _engine;
            }
        }
    }

    private SepolEngine? _engine;

    public string TempFile(string name, byte[] content)
    {
        string path = Path.Combine(Directory, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private string Compile(string cil)
    {
        string output = Path.Combine(Directory, Path.ChangeExtension(cil, ".33"));
        Tool.RunChecked("secilc", "-M", "false", "-c", "33", "-o", output, "-f", "/dev/null",
            Path.Combine(AppContext.BaseDirectory, "Policies", cil));
        return output;
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

/// <summary>
/// Every test that loads a policy into libsepol: one process-wide policy, so these run one at a time.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LibsepolCollection : ICollectionFixture<PolicyFixture>
{
    public const string Name = "libsepol";
}
