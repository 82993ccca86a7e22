using Csvmm.TestSupport;

namespace Csvmm.Fuzz.Tests;

/// <summary>
/// The fuzz targets as regression tests, without AFL++: every committed seed and every crash ever found
/// (tests/fuzz/corpus/NAME, tests/fuzz/regressions/NAME) goes through its target again and must not crash; the
/// built-in seeds are the committed ones; and a fixed set of random mutations of each seed runs too.
/// </summary>
public sealed class CorpusReplayTests
{
    private static string Dir(string kind, string target) => RepoPaths.Of("tests", "fuzz", kind, target);

    public static TheoryData<string> Targets()
    {
        var data = new TheoryData<string>();
        foreach (var t in FuzzTargets.All) data.Add(t.Name);
        return data;
    }

    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var t in FuzzTargets.All)
            foreach (string kind in new[] { "corpus", "regressions" })
                if (Directory.Exists(Dir(kind, t.Name)))
                    foreach (string f in Directory.EnumerateFiles(Dir(kind, t.Name)).Order())
                        data.Add(t.Name, Path.GetRelativePath(RepoPaths.Of("tests", "fuzz"), f));
        return data;
    }

    [Fact]
    public void There_are_targets_for_the_parsers_and_the_device_models()
    {
        var names = FuzzTargets.All.Select(t => t.Name).ToHashSet();
        foreach (string n in new[] { "kernel", "file-contexts", "cli-specs", "snapshot-file", "snapshot-sections", "qmp" })
            Assert.Contains(n, names);
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_target_has_its_seeds_committed(string target)
    {
        var t = FuzzTargets.Find(target)!;
        var seeds = t.Seeds().ToList();
        Assert.NotEmpty(seeds);
        foreach (var (name, bytes) in seeds)
        {
            string path = Path.Combine(Dir("corpus", target), name);
            Assert.True(File.Exists(path), $"{path} is missing: csvmm-fuzz seed {target} tests/fuzz/corpus/{target}");
            Assert.Equal(bytes, File.ReadAllBytes(path));
        }
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void A_committed_input_does_not_crash_its_target(string target, string file)
    {
        FuzzTargets.Find(target)!.Run(File.ReadAllBytes(RepoPaths.Of("tests", "fuzz", file)));
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Random_mutations_of_the_seeds_do_not_crash(string target)
    {
        var t = FuzzTargets.Find(target)!;
        var rng = new Random(target.GetHashCode(StringComparison.Ordinal) & 0x7FFF_FFFF ^ 20261207);
        foreach (var (_, seed) in t.Seeds())
            for (int i = 0; i < 300; i++)
            {
                byte[] input = Mutate(seed, rng);
                try
                {
                    t.Run(input);
                }
                catch (Exception e)
                {
                    Assert.Fail($"{target}: mutation {i} ({Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}...): {e}");
                }
            }
    }

    private static byte[] Mutate(byte[] seed, Random rng)
    {
        var b = seed.ToList();
        int edits = rng.Next(1, 9);
        for (int e = 0; e < edits; e++)
        {
            switch (rng.Next(5))
            {
                case 0 when b.Count > 0: b[rng.Next(b.Count)] ^= (byte)(1 << rng.Next(8)); break;
                case 1 when b.Count > 0: b[rng.Next(b.Count)] = (byte)rng.Next(256); break;
                case 2: b.Insert(rng.Next(b.Count + 1), (byte)rng.Next(256)); break;
                case 3 when b.Count > 0: b.RemoveAt(rng.Next(b.Count)); break;
                case 4 when b.Count > 8: b.RemoveRange(rng.Next(b.Count / 2), rng.Next(1, b.Count / 2)); break;
            }
        }
        return [.. b];
    }
}
