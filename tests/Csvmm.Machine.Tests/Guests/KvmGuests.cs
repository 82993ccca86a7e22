namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// Tests that boot real guests share this collection: they run one at a time and alone (this host has two
/// cores and KVM emulates their code), so timings such as the watchdog's stay meaningful.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class KvmGuests
{
    public const string Name = "KVM guests";
}
