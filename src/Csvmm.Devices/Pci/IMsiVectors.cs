namespace Csvmm.Devices.Pci;

/// <summary>An MSI message as the guest programs it into an MSI-X table entry: where to write and what.</summary>
public readonly record struct MsiMessage(ulong Address, uint Data);

/// <summary>
/// The interrupt-controller side of one PCI function's MSI-X vectors. The machine implements it over KVM (a GSI
/// and an irqfd per vector, routed with KVM_SET_GSI_ROUTING); tests use a recording fake. Masking and the pending
/// bits are the MSI-X table's business (see <c>MsixTable</c>): this interface only routes and fires.
/// </summary>
public interface IMsiVectors
{
    /// <summary>Number of vectors (the MSI-X table size).</summary>
    int Count { get; }

    /// <summary>
    /// The guest changed vector <paramref name="vector"/>'s message (or enabled MSI-X): route it to
    /// <paramref name="message"/>, or drop the route when null (MSI-X disabled). Called on a vCPU thread, rarely.
    /// </summary>
    void SetRoute(int vector, MsiMessage? message);

    /// <summary>Injects vector <paramref name="vector"/> (an eventfd write). Called on I/O threads: no allocation, no blocking.</summary>
    void Trigger(int vector);
}
