using System.CommandLine;
using System.Diagnostics;
using Csvmm.Security;

namespace Csvmm.Cli.Tests;

/// <summary>The --context and --selinux-transition options (the gate's plan and transition are tested in Csvmm.Security.Tests).</summary>
public class SelinuxHostOptionTests
{
    [Fact]
    public void Context_option_decides_whether_getcon_is_used()
    {
        var cli = new CommandLine();
        var (o, _) = cli.ToOptions(cli.Root.Parse(["--firmware", "/f", "--disk", "/d.img"]));
        Assert.True(o!.Security.UseHostContext);
        Assert.False(o.Security.Transition);
        (o, _) = cli.ToOptions(cli.Root.Parse(["--firmware", "/f", "--context", "staff_u:staff_r:staff_t"]));
        Assert.False(o!.Security.UseHostContext);
        Assert.True(SecurityOptions.Default.UseHostContext);
    }

    [Fact]
    public void Transition_option_parses()
    {
        var cli = new CommandLine();
        var (o, err) = cli.ToOptions(cli.Root.Parse(["--firmware", "/f", "--disk", "/d.img", "--selinux-transition"]));
        Assert.Null(err);
        Assert.True(o!.Security.Transition);
    }

    [Theory]
    [InlineData(new[] { "--firmware", "/f", "--selinux-transition" }, "--selinux-transition needs a --disk")]
    [InlineData(new[] { "--firmware", "/f", "--disk", "/d", "--selinux", "disabled", "--selinux-transition" }, "cannot be combined with --selinux disabled")]
    public void Transition_option_conflicts_are_usage_errors(string[] args, string fragment)
    {
        var cli = new CommandLine();
        var (o, err) = cli.ToOptions(cli.Root.Parse(args));
        Assert.Null(o);
        Assert.Contains(fragment, err);
    }

    [Fact]
    public void Check_has_no_transition_option()
    {
        var cli = new CommandLine();
        ParseResult r = cli.Root.Parse(["check", "--disk", "/d", "--selinux-transition"]);
        Assert.NotEmpty(r.Errors);
    }
}

/// <summary>The published binary on this host (no SELinux): the log line, --selinux-transition's error, and the fail-closed policies.</summary>
public class SelinuxHostBinaryTests : IDisposable
{
    private static readonly byte[] PowerOff = [0xBA, 0x04, 0x06, 0xB8, 0x00, 0x34, 0xEF, 0xF4];
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-selinux-bin-").FullName;
    private readonly string _firmware;

    public SelinuxHostBinaryTests()
    {
        var image = new byte[65536];
        PowerOff.CopyTo(image, 0xFFF0);
        _firmware = Path.Combine(_dir, "poweroff.bin");
        File.WriteAllBytes(_firmware, image);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool HostHasSelinux => Directory.Exists(SelinuxHost.SelinuxFs);

    private string Disk(string name)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, new byte[1 << 20]);
        return p;
    }

    /// <summary>A file_contexts labelling ok*.img qemu_virtdisk_t (the only disk type every policy here declares).</summary>
    private string FileContexts()
    {
        string path = Path.Combine(_dir, "file_contexts");
        File.WriteAllText(path, $"{_dir.Replace(".", "\\.", StringComparison.Ordinal)}/ok[^/]*\\.img  --  system_u:object_r:qemu_virtdisk_t\n");
        return path;
    }

    /// <summary>Compiles CIL files with secilc as policy/build.sh does (MLS off, version 33).</summary>
    private string Compile(string name, params string[] cilFiles)
    {
        string output = Path.Combine(_dir, name);
        var psi = new ProcessStartInfo("secilc", ["--mls=false", "--policyvers=33", "--output=" + output, "--filecontext=/dev/null", .. cilFiles])
        { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd() + p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, "secilc failed: " + err);
        return output;
    }

    private static void AssertOneLine(int code, int expected, string stderr, string fragment)
    {
        Assert.True(code == expected, $"exit {code}: {stderr}");
        string[] lines = stderr.TrimEnd().Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("csvmm: ", lines[0]);
        Assert.Contains(fragment, lines[0]);
        Assert.DoesNotContain("Exception", stderr);
    }

    [Fact]
    public void Log_reports_that_this_kernel_has_no_selinux()
    {
        if (HostHasSelinux)
            return;
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--log-level", "information");
        Assert.True(code == 0, stderr);
        Assert.Contains("csvmm: [INF] SELinux: is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux); " +
            "deciding with the standalone policy (libsepol) in permissive mode", stderr);
    }

    [Fact]
    public void Selinux_transition_without_selinux_is_a_one_line_usage_error()
    {
        if (HostHasSelinux)
            return;
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", Disk("ok.img"), "--selinux-transition");
        AssertOneLine(code, ExitCodes.Usage, stderr,
            "--selinux-transition needs SELinux in the kernel, but is_selinux_enabled() = 0: no SELinux in this kernel");
    }

    [Fact]
    public void Selinux_transition_help_is_listed()
    {
        var (code, stdout, _) = BinaryTests.Csvmm("--help");
        Assert.Equal(0, code);
        Assert.Contains("--selinux-transition", stdout);
    }

    [Fact]
    public void Check_output_names_the_host_and_the_engine()
    {
        if (HostHasSelinux)
            return;
        string root = BinaryTests.RepoRoot();
        string policy = Compile("policy.33", Path.Combine(root, "policy", "standalone", "base.cil"), Path.Combine(root, "policy", "csvmm.cil"));
        var (code, stdout, stderr) = BinaryTests.Csvmm("check", "--disk", Disk("ok.img"), "--policy", policy, "--file-contexts", FileContexts(),
            "--selinux", "enforcing");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("selinux:    is_selinux_enabled() = 0: no SELinux in this kernel (no /sys/fs/selinux); deciding with the standalone policy (libsepol) in enforcing mode",
            stdout);
        Assert.Contains("vm:         user_u:object_r:vm_user_t (allowed)", stdout);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void Policy_without_class_vm_is_a_denial_in_enforcing_mode()
    {
        string root = BinaryTests.RepoRoot();
        string policy = Compile("novm.33", Path.Combine(root, "tests", "Csvmm.Security.Tests", "Policies", "novm.cil"));
        string ok = Disk("ok.img");
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", ok,
            "--policy", policy, "--file-contexts", FileContexts(), "--selinux", "enforcing");
        AssertOneLine(code, ExitCodes.Denied, stderr, $"has no class 'vm'");

        var (checkCode, stdout, _) = BinaryTests.Csvmm("check", "--disk", ok, "--policy", policy, "--file-contexts", FileContexts(), "--selinux", "enforcing");
        Assert.Equal(ExitCodes.Denied, checkCode);
        Assert.Contains("has no class 'vm'", stdout);
    }

    [Fact]
    public void Policy_without_the_type_change_rule_is_a_denial_in_enforcing_mode()
    {
        string root = BinaryTests.RepoRoot();
        string module = Path.Combine(_dir, "csvmm-no-typechange.cil");
        string[] lines = File.ReadAllLines(Path.Combine(root, "policy", "csvmm.cil"));
        string[] kept = lines.Where(l => !l.StartsWith("(typechange user_t qemu_virtdisk_t vm", StringComparison.Ordinal)).ToArray();
        Assert.Equal(lines.Length - 1, kept.Length);
        File.WriteAllLines(module, kept);
        string policy = Compile("notypechange.33", Path.Combine(root, "policy", "standalone", "base.cil"), module);

        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", Disk("ok.img"),
            "--policy", policy, "--file-contexts", FileContexts(), "--selinux", "enforcing");
        Assert.True(code == ExitCodes.Denied, $"exit {code}: {stderr}");
        string last = stderr.TrimEnd().Split('\n')[^1];
        Assert.StartsWith("csvmm: ", last);
        Assert.Contains("no type_change rule: type_change user_t qemu_virtdisk_t:vm <vm type> is missing", last);
        // The AVC line of the missing rule, logged as an error in enforcing mode.
        Assert.Contains("[ERR] avc:  denied  { type_change } for  pid=", stderr);
        Assert.Contains("tcontext=system_u:object_r:qemu_virtdisk_t tclass=vm permissive=0", stderr);
    }
}
