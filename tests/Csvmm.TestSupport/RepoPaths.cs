using Xunit;

namespace Csvmm.TestSupport;

/// <summary>The repository the tests run from, and what ./build.sh leaves in it.</summary>
public static class RepoPaths
{
    /// <summary>The directory holding build.sh and csvmm.slnx, found above the test assembly.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "build.sh")) && File.Exists(Path.Combine(d.FullName, "csvmm.slnx")))
                return d.FullName;
        throw new InvalidOperationException("the repository (build.sh, csvmm.slnx) is not above " + AppContext.BaseDirectory);
    }

    /// <summary>A path inside the repository.</summary>
    public static string Of(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>out/csvmm, the NativeAOT binary; fails the test when ./build.sh has not made it.</summary>
    public static string Csvmm
    {
        get
        {
            string exe = Of("out", "csvmm");
            Assert.True(File.Exists(exe), $"{exe} is missing: run ./build.sh first");
            return exe;
        }
    }
}

/// <summary>What a test needs of the host. A missing requirement FAILS the test with one line: it never skips.</summary>
public static class HostRequirements
{
    public const string DevKvm = "/dev/kvm";

    /// <summary>Fails unless /dev/kvm exists: <paramref name="why"/> says what the test does with it.</summary>
    public static void RequireKvm(string why = "this test runs a guest")
    {
        if (!File.Exists(DevKvm))
            Assert.Fail($"{DevKvm} is missing: {why} and needs KVM on this host (load kvm_intel, kvm_amd or kvm_pvm)");
    }
}
