namespace Csvmm.Fuzz;

/// <summary>Every fuzz target in this assembly (each a public class implementing <see cref="IFuzzTarget"/>), by name.</summary>
public static class FuzzTargets
{
    public static IReadOnlyList<IFuzzTarget> All { get; } =
        typeof(FuzzTargets).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false, IsPublic: true } && typeof(IFuzzTarget).IsAssignableFrom(t))
            .Select(t => (IFuzzTarget)Activator.CreateInstance(t)!)
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .ToList();

    public static IFuzzTarget? Find(string name) => All.FirstOrDefault(t => t.Name == name);
}
