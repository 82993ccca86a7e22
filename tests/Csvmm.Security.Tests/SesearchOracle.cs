using System.Text.RegularExpressions;

namespace Csvmm.Security.Tests;

/// <summary>What setools' sesearch says about one (process type, disk type) pair.</summary>
/// <param name="FileRead">An allow rule grants read, open and getattr on class file.</param>
/// <param name="VmType">The type_change target for class vm, or null when there is no rule.</param>
/// <param name="Entrypoint">An allow rule grants entrypoint on class vm from the disk type to the VM type (the disk type itself without a type_change).</param>
public sealed record OracleAnswer(bool FileRead, string? VmType, bool Entrypoint);

/// <summary>
/// The independent oracle: setools (sesearch, seinfo) run on the compiled policy. sesearch matches
/// types through attributes itself; this class only parses its rule output.
/// </summary>
public sealed partial class SesearchOracle
{
    private SesearchOracle(IReadOnlySet<string> allTypes, IReadOnlySet<string> roleTypes,
        IReadOnlyDictionary<(string Process, string Disk), OracleAnswer> answers)
    {
        AllTypes = allTypes;
        RoleTypes = roleTypes;
        Answers = answers;
    }

    /// <summary>Every type of the policy (seinfo -t).</summary>
    public IReadOnlySet<string> AllTypes { get; }
    /// <summary>Every type some role other than object_r may run as (seinfo -r -x): the process domains.</summary>
    public IReadOnlySet<string> RoleTypes { get; }
    /// <summary>sesearch's answers for every (process type, disk type) pair asked.</summary>
    public IReadOnlyDictionary<(string Process, string Disk), OracleAnswer> Answers { get; }

    /// <summary>
    /// Seven tool runs in all (sesearch's start-up dominates): seinfo for the types and roles, one
    /// sesearch per process type (allow + type_change rules with that source; sesearch does the
    /// source matching, attributes included) and one per disk type (class vm allow rules with that
    /// source). Target filtering is by name, so a rule whose target is an attribute (none exist in
    /// the compiled standalone policy) makes the oracle refuse rather than guess.
    /// </summary>
    public static async Task<SesearchOracle> QueryAsync(string policy, IReadOnlyCollection<string> processTypes, IReadOnlyCollection<string> diskTypes)
    {
        async Task<string> Run(params string[] args)
        {
            var r = await Tool.RunAsync(args[0], [policy, .. args[1..]]);
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"{string.Join(' ', args)} failed: {r.StdErr}");
            return r.StdOut;
        }

        Task<string> info = Run("seinfo", "-t", "-r", "-x");
        var byProcess = processTypes.ToDictionary(p => p, p => Run("sesearch", "-A", "--type_change", "-s", p));
        var byDisk = diskTypes.ToDictionary(d => d, d => Run("sesearch", "-A", "-s", d, "-c", "vm"));
        await Task.WhenAll([info, .. byProcess.Values, .. byDisk.Values]);

        string seinfo = await info;
        var allTypes = new SortedSet<string>(TypeLine().Matches(seinfo).Select(m => m.Groups[1].Value), StringComparer.Ordinal);
        var roleTypes = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match m in RoleLine().Matches(seinfo))
            if (m.Groups[1].Value != "object_r")
                roleTypes.UnionWith(Names(m.Groups[2].Value));

        List<Rule> Rules(string output)
        {
            var rules = ParseRules(output);
            foreach (var r in rules)
                if (!allTypes.Contains(r.Target))
                    throw new InvalidOperationException($"rule on attribute {r.Target}: this oracle only matches concrete target types");
            return rules;
        }

        var answers = new Dictionary<(string, string), OracleAnswer>();
        foreach (string p in processTypes)
        {
            var rules = Rules(await byProcess[p]);
            foreach (string d in diskTypes)
            {
                var read = rules.Where(r => r.Kind == "allow" && r.Target == d && r.Class == "file").SelectMany(r => r.Perms).ToHashSet();
                var vmTypes = rules.Where(r => r.Kind == "type_change" && r.Target == d && r.Class == "vm").SelectMany(r => r.Perms).Distinct().ToList();
                if (vmTypes.Count > 1)
                    throw new InvalidOperationException($"sesearch reports several type_change rules for {p} {d}: {string.Join(", ", vmTypes)}");
                string? vm = vmTypes.SingleOrDefault();
                bool entrypoint = Rules(await byDisk[d]).Any(r => r.Kind == "allow" && r.Target == (vm ?? d) && r.Perms.Contains("entrypoint"));
                answers[(p, d)] = new OracleAnswer(read.IsSupersetOf(["read", "open", "getattr"]), vm, entrypoint);
            }
        }
        return new SesearchOracle(allTypes, roleTypes, answers);
    }

    private sealed record Rule(string Kind, string Source, string Target, string Class, string[] Perms);

    /// <summary>Parses "allow S T:C { p q };", "allow S T:C p;" and "type_change S T:C X;" lines (X lands in Perms).</summary>
    private static List<Rule> ParseRules(string output)
    {
        var rules = new List<Rule>();
        foreach (string raw in output.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0)
                continue;
            var m = RuleLine().Match(line);
            if (!m.Success)
                throw new InvalidOperationException($"unexpected sesearch output: {line}");
            string perms = m.Groups[5].Success ? m.Groups[5].Value : m.Groups[6].Value;
            rules.Add(new Rule(m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value, m.Groups[4].Value, Names(perms).ToArray()));
        }
        return rules;
    }

    private static IEnumerable<string> Names(string list) =>
        list.Split([' ', '\n', '\t', ';', '{', '}'], StringSplitOptions.RemoveEmptyEntries);

    [GeneratedRegex(@"^(allow|type_change) (\S+) (\S+):(\S+) (?:\{ ([^}]*) \}|(\S+));$")]
    private static partial Regex RuleLine();

    [GeneratedRegex(@"^\s*type (\S+);$", RegexOptions.Multiline)]
    private static partial Regex TypeLine();

    [GeneratedRegex(@"role (\S+) types \{?([^;}]*)\}?;")]
    private static partial Regex RoleLine();
}
