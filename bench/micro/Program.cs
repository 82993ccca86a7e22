using BenchmarkDotNet.Running;

namespace Csvmm.Bench.Micro;

/// <summary>Entry point: BenchmarkDotNet's switcher, so <c>--filter</c>, <c>--job short</c> etc. work as usual.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
