using Csvmm.Sys;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>
/// A virtio device independent of its transport (kvmtool's virtio_ops, Cloud Hypervisor's VirtioDevice): what it
/// offers, its configuration structure, and its queues once the driver has set them up. The transport
/// (<see cref="VirtioPciDevice"/>) owns feature negotiation, queue registers, notification and interrupts.
/// </summary>
/// <remarks>
/// <see cref="ReadConfig"/>/<see cref="WriteConfig"/> run on vCPU threads; <see cref="Activate"/> and
/// <see cref="Reset"/> on the vCPU thread that wrote the device status, under the transport's lock, never at the
/// same time. Requests are served on the device's own thread(s).
/// </remarks>
public interface IVirtioDevice : IDisposable
{
    /// <summary>Virtio device ID (<see cref="VirtioDeviceType"/>).</summary>
    ushort DeviceType { get; }

    /// <summary>24-bit PCI class code the transport advertises.</summary>
    uint PciClassCode { get; }

    /// <summary>Feature bits offered to the driver, including VIRTIO_F_VERSION_1.</summary>
    ulong DeviceFeatures { get; }

    /// <summary>Number of virtqueues.</summary>
    int QueueCount { get; }

    /// <summary>Largest size of queue <paramref name="queue"/> (a power of two).</summary>
    ushort MaxQueueSize(int queue);

    /// <summary>Bytes of the device-specific configuration structure.</summary>
    int ConfigSize { get; }

    /// <summary>Reads the configuration structure (little-endian fields); <paramref name="offset"/>+length is inside <see cref="ConfigSize"/>.</summary>
    void ReadConfig(int offset, Span<byte> data);

    /// <summary>A driver write to the configuration structure; read-only fields ignore it.</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> data);

    /// <summary>DRIVER_OK: start serving the queues the driver enabled.</summary>
    void Activate(VirtioActivation activation);

    /// <summary>Stops serving queues and waits until no request is in flight; back to the pre-activation state.</summary>
    void Reset();

    /// <summary>
    /// While active: stops serving the queues, first completing every request already taken from them (its used
    /// element written and the driver notified), so that the rings in guest memory and the queue indices are the
    /// whole device state. Buffers the driver adds meanwhile wait. Used to save or migrate a stopped machine.
    /// Idempotent; no effect when not active.
    /// </summary>
    void Quiesce();

    /// <summary>After <see cref="Quiesce"/> (or an activation with <see cref="VirtioActivation.Quiesced"/>): serves the queues again, looking at every one once.</summary>
    void Resume();
}

/// <summary>An enabled virtqueue handed to the device at activation.</summary>
/// <param name="Index">The queue's virtio index.</param>
/// <param name="Queue">The validated split queue.</param>
/// <param name="Notify">The eventfd the driver's notifications signal (by KVM ioeventfd or the transport).</param>
public sealed record VirtioQueue(int Index, SplitQueue Queue, EventFdHandle Notify);

/// <summary>What a device gets at DRIVER_OK.</summary>
/// <param name="Memory">Guest memory the rings and buffers live in.</param>
/// <param name="Features">The negotiated features.</param>
/// <param name="Queues">Enabled queues, in index order (disabled ones are left out).</param>
/// <param name="Interrupt">How the device signals the driver.</param>
/// <param name="Quiesced">Take the queues but serve nothing until <see cref="IVirtioDevice.Resume"/> (a restore in progress).</param>
public sealed record VirtioActivation(GuestMemory Memory, ulong Features, IReadOnlyList<VirtioQueue> Queues, IVirtioInterrupt Interrupt,
    bool Quiesced = false);

/// <summary>The transport's interrupt side, as a device sees it. Called on the device's I/O thread; never blocks or allocates.</summary>
public interface IVirtioInterrupt
{
    /// <summary>A used-buffer notification for queue <paramref name="queue"/> (MSI-X vector of the queue, or INTx + ISR bit 0).</summary>
    void SignalQueue(int queue);

    /// <summary>A configuration-change notification (MSI-X config vector, or INTx + ISR bit 1).</summary>
    void SignalConfig();

    /// <summary>The device hit an error it cannot recover from (a broken ring): sets DEVICE_NEEDS_RESET and notifies.</summary>
    void SetNeedsReset();
}
