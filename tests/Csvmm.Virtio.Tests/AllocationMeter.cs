namespace Csvmm.Virtio.Tests;

/// <summary>The allocation tests run alone: other tests' threads and JIT work must not blur the count.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}
