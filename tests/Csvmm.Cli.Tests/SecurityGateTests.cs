using System.CommandLine;
using System.Diagnostics;
using Csvmm.Security;
using Csvmm.TestSupport;

// The CLI (and its SELinux gate) is Linux only; so are these tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Csvmm.Cli.Tests;

/// <summary>The SELinux options' parsing and validation (the gate itself is tested in Csvmm.Security.Tests).</summary>
public class SecurityOptionsTests
{
    [Fact]
    public void SecurityOptionsDefaultBesideTheExecutable()
    {
        var cli = new CommandLine();
        var (o, err) = cli.ToOptions(cli.Root.Parse(["--firmware", "/f", "--disk", "/d.img"]));
        Assert.Null(err);
        Assert.Null(o!.Security.Mode);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "policy", "policy.33"), o.Security.PolicyPath);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "policy", "file_contexts"), o.Security.FileContextsPath);
        Assert.Equal(StandalonePolicy.DefaultProcessContext, o.Security.ProcessContext);
        Assert.False(o.Security.TrustXattr);
    }

    [Fact]
    public void SecurityOptionsParse()
    {
        var cli = new CommandLine();
        var (o, err) = cli.ToOptions(cli.Root.Parse(["--firmware", "/f", "--selinux", "enforcing", "--policy", "/p/pol",
            "--context", "staff_u:staff_r:staff_t", "--trust-xattr"]));
        Assert.Null(err);
        Assert.Equal(new SecurityOptions(EnforcementMode.Enforcing, "/p/pol", "/p/file_contexts", "staff_u:staff_r:staff_t", true), o!.Security);
    }

    [Theory]
    [InlineData(new[] { "--firmware", "/f", "--selinux", "strict" }, "--selinux strict: expected enforcing, permissive or disabled")]
    [InlineData(new[] { "--firmware", "/f", "--context", "" }, "--context: empty context")]
    [InlineData(new[] { "check" }, "check: give at least one --disk PATH (or --snapshot PATH)")]
    [InlineData(new[] { "check", "--disk", "/d", "--selinux", "on" }, "--selinux on")]
    public void BadSecurityOptionsAreUsageErrors(string[] args, string fragment)
    {
        var cli = new CommandLine();
        ParseResult r = cli.Root.Parse(args);
        string? err = r.CommandResult.Command == cli.Check ? cli.ToCheckOptions(r).Error : cli.ToOptions(r).Error;
        Assert.NotNull(err);
        Assert.Contains(fragment, err);
    }
}

/// <summary>
/// The gate in the real binary (out/csvmm) with the compiled standalone policy and a file_contexts written
/// here: <c>ok*.img</c> are qemu_virtdisk_t (user_t may boot them into vm_user_t), <c>bad*.img</c> are
/// untrusted_disk_t (no entrypoint into vm_user_t).
/// </summary>
public class SecurityGateBinaryTests : IDisposable
{
    private static readonly byte[] PowerOff = [0xBA, 0x04, 0x06, 0xB8, 0x00, 0x34, 0xEF, 0xF4];
    private const string VmUser = "user_u:object_r:vm_user_t";

    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-selinux-").FullName;
    private readonly string _policy;
    private readonly string _fileContexts;
    private readonly string _firmware;

    public SecurityGateBinaryTests()
    {
        _policy = CompiledPolicy();
        _fileContexts = Path.Combine(_dir, "file_contexts");
        string dir = _dir.Replace(".", "\\.", StringComparison.Ordinal);
        File.WriteAllText(_fileContexts,
            $"{dir}/ok[^/]*\\.img     --  system_u:object_r:qemu_virtdisk_t\n" +
            $"{dir}/bad[^/]*\\.img    --  system_u:object_r:untrusted_disk_t\n" +
            $"{dir}/ok[^/]*\\.snap    --  system_u:object_r:qemu_snapshot_t\n" +
            $"{dir}/bad[^/]*\\.snap   --  system_u:object_r:untrusted_disk_t\n");
        var image = new byte[65536];
        PowerOff.CopyTo(image, 0xFFF0);
        _firmware = Path.Combine(_dir, "poweroff.bin");
        File.WriteAllBytes(_firmware, image);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>out/policy/policy.33 from ./build.sh, else compiled by policy/build.sh into this test's directory.</summary>
    private string CompiledPolicy()
    {
        string root = BinaryTests.RepoRoot();
        string shipped = Path.Combine(root, "out", "policy", "policy.33");
        if (File.Exists(shipped))
            return shipped;
        string outDir = Path.Combine(_dir, "policy");
        using var p = Process.Start(new ProcessStartInfo("bash", [Path.Combine(root, "policy", "build.sh"), outDir]) { RedirectStandardError = true })!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, "policy/build.sh failed: " + err);
        return Path.Combine(outDir, "policy.33");
    }

    private string Disk(string name)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, new byte[1 << 20]);
        return p;
    }

    private string[] Gate(params string[] extra) => ["--policy", _policy, "--file-contexts", _fileContexts, .. extra];

    private (int Code, string Stdout, string Stderr) Boot(string disk, params string[] extra) =>
        BinaryTests.Csvmm(["--firmware", _firmware, "--memory", "16M", "--disk", disk, .. Gate(extra)]);

    private static string DeniedEntrypoint(string disk, int permissive) =>
        $"comm=\"csvmm\" path=\"{disk}\" scontext=system_u:object_r:untrusted_disk_t tcontext={VmUser} tclass=vm permissive={permissive}";

    private static void AssertOneLineDenial(int code, string stderr, string fragment)
    {
        Assert.True(code == 6, $"exit {code}: {stderr}");
        string[] lines = stderr.TrimEnd().Split('\n');
        Assert.StartsWith("csvmm: ", lines[^1]);
        Assert.Contains(fragment, lines[^1]);
        Assert.DoesNotContain("Exception", stderr);
    }

    [Fact]
    public void CheckAllowedDiskShowsTheVmContext()
    {
        string ok = Disk("ok.img");
        var (code, stdout, stderr) = BinaryTests.Csvmm(["check", "--disk", ok, .. Gate("--selinux", "enforcing")]);
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains($"vm context: {VmUser}", stdout);
        Assert.Contains($"vm:         {VmUser} (allowed)", stdout);
        Assert.Contains("file read:  granted", stdout);
        Assert.Contains("entrypoint: granted", stdout);
    }

    [Fact]
    public void CheckListsWhatTheProcessMayDoToTheRunningVm()
    {
        var (code, stdout, stderr) = BinaryTests.Csvmm(["check", "--disk", Disk("ok.img"), .. Gate("--selinux", "enforcing")]);
        Assert.True(code == 0, stderr + stdout);
        foreach (var perm in new[] { "query", "control", "save", "restore", "migrate_out", "migrate_in" })
            Assert.Matches($@"manage: +{perm} +granted", stdout);
    }

    /// <summary>A real (diskless) snapshot file, as QMP migrate writes one.</summary>
    private string Snapshot(string name)
    {
        string p = Path.Combine(_dir, name);
        using var w = new Csvmm.Machine.Snapshot.SnapshotWriter(p);
        w.Add(Csvmm.Machine.Snapshot.SectionKind.Spec, 0, new Csvmm.Machine.MachineSpec { Firmware = _firmware, MemoryBytes = 16UL << 20 }.Encode());
        w.Finish();
        return p;
    }

    [Fact]
    public void CheckSnapshotDecidesItAsAnImageOfItsOwnType()
    {
        var (code, stdout, stderr) = BinaryTests.Csvmm(["check", "--snapshot", Snapshot("ok.snap"), .. Gate("--selinux", "enforcing")]);
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("system_u:object_r:qemu_snapshot_t", stdout);
        Assert.Contains($"vm:         {VmUser} (allowed)", stdout);
    }

    [Fact]
    public void IncomingSnapshotOfTheWrongTypeIsDeniedBeforeAnyVmExists()
    {
        string bad = Snapshot("bad.snap");
        var (code, _, stderr) = BinaryTests.Csvmm(["--incoming", $"file:{bad}", .. Gate("--selinux", "enforcing")]);
        AssertOneLineDenial(code, stderr, "entrypoint denied");
        Assert.Contains(DeniedEntrypoint(bad, 0), stderr);
        Assert.DoesNotContain("/dev/kvm", stderr); // decided before KVM is opened
    }

    [Theory]
    [InlineData("enforcing", 0)]
    [InlineData("permissive", 1)]
    public void CheckDeniedDiskExits6InEveryMode(string mode, int permissive)
    {
        string bad = Disk("bad.img");
        var (code, stdout, _) = BinaryTests.Csvmm(["check", "--disk", bad, .. Gate("--selinux", mode)]);
        Assert.Equal(6, code);
        Assert.Matches(@"avc:  denied  \{ entrypoint \} for  pid=\d+ " + System.Text.RegularExpressions.Regex.Escape(DeniedEntrypoint(bad, permissive)), stdout);
        Assert.Contains("no rule allow untrusted_disk_t vm_user_t:vm entrypoint", stdout);
    }

    [Fact]
    public void CheckReportsDisagreeingDisks()
    {
        // staff_t may boot both disk types, but into different VM types: one VM cannot have both.
        var (code, stdout, _) = BinaryTests.Csvmm(["check", "--disk", Disk("ok.img"), "--disk", Disk("bad.img"),
            .. Gate("--selinux", "enforcing", "--context", "staff_u:staff_r:staff_t")]);
        Assert.Equal(6, code);
        Assert.Contains("disks disagree on the VM context", stdout);
    }

    [Fact]
    public void AllowedDiskBootsInEnforcingMode()
    {
        var (code, _, stderr) = Boot(Disk("ok.img"), "--selinux", "enforcing", "--log-level", "information");
        Assert.True(code == 0, stderr);
        Assert.Contains($"SELinux: VM context {VmUser}", stderr);
        Assert.DoesNotContain("denied", stderr);
    }

    [SkippableFact]
    public void DeniedDiskIsNeverOpenedForIo()
    {
        Skip.IfNot(File.Exists("/usr/bin/strace"), "strace is not installed");
        string bad = Disk("bad.img");
        string ok = Disk("ok-too.img");
        string log = Path.Combine(_dir, "strace.log");
        string exe = RepoPaths.Csvmm;
        var psi = new ProcessStartInfo("strace", ["-f", "-e", "trace=openat,open", "-o", log, exe, "--firmware", _firmware,
            "--memory", "16M", "--disk", ok, "--disk", bad, .. Gate("--selinux", "enforcing")]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();

        AssertOneLineDenial(p.ExitCode, stderr, "entrypoint denied: no rule allow untrusted_disk_t vm_user_t:vm entrypoint");
        Assert.Contains(DeniedEntrypoint(bad, 0), stderr);
        string[] opens = File.ReadAllLines(log);
        string[] ofBad = opens.Where(l => l.Contains($"\"{bad}\"", StringComparison.Ordinal)).ToArray();
        Assert.Single(ofBad);
        Assert.Contains("O_PATH", ofBad[0]);
        // Neither disk was reopened for I/O: the VM was refused as a whole before any disk was opened.
        Assert.DoesNotContain(opens, l => l.Contains("\"/proc/self/fd/", StringComparison.Ordinal) && !l.Contains("O_PATH", StringComparison.Ordinal));
        Assert.DoesNotContain(opens, l => (l.Contains($"\"{bad}\"", StringComparison.Ordinal) || l.Contains($"\"{ok}\"", StringComparison.Ordinal))
            && !l.Contains("O_PATH", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void AllowedDiskIsReopenedThroughTheCheckedDescriptor()
    {
        Skip.IfNot(File.Exists("/usr/bin/strace"), "strace is not installed");
        string ok = Disk("ok.img");
        string log = Path.Combine(_dir, "strace.log");
        string exe = RepoPaths.Csvmm;
        using var p = Process.Start(new ProcessStartInfo("strace", ["-f", "-e", "trace=openat,open", "-o", log, exe, "--firmware", _firmware,
            "--memory", "16M", "--disk", ok, .. Gate("--selinux", "enforcing")]) { RedirectStandardError = true })!;
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, stderr);

        string[] opens = File.ReadAllLines(log);
        string pathOpen = Assert.Single(opens, l => l.Contains($"\"{ok}\"", StringComparison.Ordinal));
        Assert.Contains("O_PATH", pathOpen);
        string fd = System.Text.RegularExpressions.Regex.Match(pathOpen, @"= (\d+)$").Groups[1].Value;
        Assert.Contains(opens, l => l.Contains($"\"/proc/self/fd/{fd}\", O_RDWR", StringComparison.Ordinal));
    }

    [Fact]
    public void PermissiveModeLogsTheDenialAndRunsTheVm()
    {
        string bad = Disk("bad.img");
        var (code, _, stderr) = Boot(bad, "--selinux", "permissive");
        Assert.True(code == 0, stderr);
        Assert.Contains("[WRN] avc:  denied  { entrypoint } for  pid=", stderr);
        Assert.Contains(DeniedEntrypoint(bad, 1), stderr);
        Assert.Contains("SELinux (permissive): would deny the VM", stderr);
    }

    [SkippableFact]
    public void DefaultOnThisHostIsPermissive()
    {
        Skip.If(Directory.Exists(SelinuxHost.SelinuxFs), "this host runs SELinux");
        string bad = Disk("bad.img");
        var (code, _, stderr) = Boot(bad);
        Assert.True(code == 0, stderr);
        Assert.Contains(DeniedEntrypoint(bad, 1), stderr);
    }

    [Fact]
    public void DisabledModeConsultsNoPolicy()
    {
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", Disk("bad.img"),
            "--selinux", "disabled", "--policy", Path.Combine(_dir, "missing.33"));
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("avc:", stderr);
    }

    [Fact]
    public void MissingPolicyFailsClosed()
    {
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", Disk("ok.img"),
            "--selinux", "enforcing", "--policy", Path.Combine(_dir, "missing.33"), "--file-contexts", _fileContexts);
        AssertOneLineDenial(code, stderr, "cannot open SELinux policy");
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void CorruptPolicyFailsClosed()
    {
        string junk = Path.Combine(_dir, "junk.33");
        File.WriteAllBytes(junk, System.Security.Cryptography.RandomNumberGenerator.GetBytes(4096));
        var (code, _, stderr) = BinaryTests.Csvmm("--firmware", _firmware, "--memory", "16M", "--disk", Disk("ok.img"),
            "--selinux", "enforcing", "--policy", junk, "--file-contexts", _fileContexts);
        AssertOneLineDenial(code, stderr, "is not a valid binary policy");
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void UnlabelledDiskFailsClosed()
    {
        string other = Disk("other.img");
        var (code, _, stderr) = Boot(other, "--selinux", "enforcing");
        AssertOneLineDenial(code, stderr, $"no line of {_fileContexts} matches {other}");
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("nobody_u:nobody_r:nobody_t")]
    [InlineData("not-a-context")]
    public void InvalidContextFailsClosed(string context)
    {
        var (code, _, stderr) = Boot(Disk("ok.img"), "--selinux", "enforcing", "--context", context);
        AssertOneLineDenial(code, stderr, context);
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void SymlinkIsLabelledByItsTarget()
    {
        string bad = Disk("bad.img");
        string link = Path.Combine(_dir, "ok-link.img"); // its own name would match the qemu_virtdisk_t line
        File.CreateSymbolicLink(link, bad);
        var (code, _, stderr) = Boot(link, "--selinux", "enforcing");
        AssertOneLineDenial(code, stderr, "entrypoint denied");
        Assert.Contains(DeniedEntrypoint(bad, 0), stderr);
    }
}
