using System.Globalization;
using System.Text;
using Csvmm.TestSupport;

namespace Csvmm.Kvm.Tests;

/// <summary>One integer the C compiler evaluates against the real headers.</summary>
/// <param name="Expression">A C integer constant expression (sizeof, offsetof, a macro...).</param>
/// <param name="IsMacro">True when <paramref name="Expression"/> is a bare macro name: a missing macro is then reported as undefined instead of failing the compile.</param>
internal readonly record struct CQuery(string Expression, bool IsMacro);

/// <summary>The values gcc computed for a set of <see cref="CQuery"/>s.</summary>
internal sealed class CFacts(IReadOnlyDictionary<string, long?> values)
{
    /// <summary>The value of <paramref name="expression"/>; fails the test if it was never asked for or is an undefined macro.</summary>
    public long Value(string expression)
    {
        if (!values.TryGetValue(expression, out long? v))
            throw new InvalidOperationException($"the C probe was not asked for '{expression}' (add it to BindingMap.AllQueries)");
        return v ?? throw new InvalidOperationException($"{expression} is not defined by <linux/kvm.h> on this host");
    }

    /// <summary>False when the macro <paramref name="macro"/> is not defined by the headers.</summary>
    public bool IsDefined(string macro) => values.TryGetValue(macro, out long? v) && v.HasValue;
}

/// <summary>
/// Writes a C program that prints every queried expression, compiles and runs it with <see cref="Gcc.CompileAndRun"/>
/// against the installed linux-libc-dev headers, and parses its output.
/// </summary>
internal static class CProbe
{
    private const string KvmHeader = "/usr/include/linux/kvm.h";

    public static CFacts Evaluate(IReadOnlyList<CQuery> queries)
    {
        if (!File.Exists(KvmHeader))
            throw new InvalidOperationException($"{KvmHeader} is missing: install linux-libc-dev (./build.sh does)");

        string output = Gcc.CompileAndRun(Generate(queries), "the KVM layout probe (a C# binding names a field <linux/kvm.h> lacks?)");
        return new CFacts(Parse(queries, output));
    }

    /// <summary>Query i is printed as "i value", or "i ?" for an undefined macro; indexes avoid quoting C text.</summary>
    private static string Generate(IReadOnlyList<CQuery> queries)
    {
        var c = new StringBuilder();
        c.AppendLine("#include <stddef.h>");
        c.AppendLine("#include <stdio.h>");
        c.AppendLine("#include <signal.h>");
        c.AppendLine("#include <linux/ioctl.h>");
        c.AppendLine("#include <linux/kvm.h>");
        c.AppendLine("int main(void)");
        c.AppendLine("{");
        for (int i = 0; i < queries.Count; i++)
        {
            CQuery q = queries[i];
            string print = $"    printf(\"%d %lld\\n\", {i}, (long long)({q.Expression}));";
            if (q.IsMacro)
            {
                c.AppendLine($"#ifdef {q.Expression}");
                c.AppendLine(print);
                c.AppendLine("#else");
                c.AppendLine($"    printf(\"%d ?\\n\", {i});");
                c.AppendLine("#endif");
            }
            else
            {
                c.AppendLine(print);
            }
        }
        c.AppendLine("    return 0;");
        c.AppendLine("}");
        return c.ToString();
    }

    private static Dictionary<string, long?> Parse(IReadOnlyList<CQuery> queries, string output)
    {
        var values = new Dictionary<string, long?>(StringComparer.Ordinal);
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int index)
                || index < 0 || index >= queries.Count)
                throw new InvalidOperationException($"unexpected line from the layout probe: '{line}'");
            values[queries[index].Expression] = parts[1] == "?"
                ? null
                : long.Parse(parts[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        }
        if (values.Count != queries.Distinct().Count())
            throw new InvalidOperationException($"the layout probe printed {values.Count} values for {queries.Count} queries");
        return values;
    }
}
