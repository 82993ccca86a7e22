using System.Numerics;
using Csvmm.Devices.State;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>Quiescing and the saved state of the transport and its queues.</summary>
public sealed partial class VirtioPciDevice : IStatefulDevice
{
    /// <summary>
    /// Stops the device serving its queues once the requests it has taken are complete (see
    /// <see cref="IVirtioDevice.Quiesce"/>); a device the driver activates meanwhile starts quiesced. With the vCPUs
    /// stopped as well, guest memory and <see cref="SaveState"/> then hold the whole device. Idempotent.
    /// </summary>
    public void Quiesce()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _quiesced = true;
            if (_active) _device.Quiesce();
        }
    }

    /// <summary>
    /// Serves the queues again. After a <see cref="LoadState"/>, every enabled queue also gets one interrupt: one the
    /// saved machine had sent but not yet delivered is not lost (a driver takes a spurious one in its stride).
    /// </summary>
    public void Resume()
    {
        lock (_lock)
        {
            if (_disposed || !_quiesced) return;
            _quiesced = false;
            if (!_active) return;
            _device.Resume();
            if (!_restored) return;
            _restored = false;
            for (int i = 0; i < _queues.Length; i++)
                if (_queues[i].Enabled) Interrupt.SignalQueue(i);
        }
    }

    /// <summary>True between <see cref="Quiesce"/> and <see cref="Resume"/>.</summary>
    public bool IsQuiesced { get { lock (_lock) return _quiesced; } }

    /// <inheritdoc />
    public string StateKind => "virtio-pci";

    /// <inheritdoc />
    public ushort StateVersion => 1;

    /// <summary>
    /// Version 1: device type (u16) and queue count (u16), both checked on load; device_feature_select,
    /// driver_feature_select (u32), the driver's features (u64), device_status (u8), config_msix_vector (u16),
    /// config_generation (u32), queue_select (u16), active (bool), ISR (u8); per queue: size (u16), desc, driver,
    /// device addresses (u64), enabled (bool), queue_msix_vector (u16), the last queue_enable error (u8), and for an
    /// enabled queue the device's next available and next used index (u16 each) and the error that broke it (u8).
    /// The rings themselves are in guest RAM; the configuration space and MSI-X table are saved apart. An active
    /// device must be quiesced first: its requests in flight are then complete and nothing moves the indices.
    /// </summary>
    /// <exception cref="InvalidOperationException">The device is active and not quiesced.</exception>
    public void SaveState(StateWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        lock (_lock)
        {
            if (_active && !_quiesced)
                throw new InvalidOperationException("virtio-pci: the device must be quiesced before its state is saved");
            writer.U16(_device.DeviceType);
            writer.U16((ushort)_queues.Length);
            writer.U32(_deviceFeatureSelect);
            writer.U32(_driverFeatureSelect);
            writer.U64(_driverFeatures);
            writer.U8((byte)Volatile.Read(ref _status));
            writer.U16((ushort)Volatile.Read(ref _configVector));
            writer.U32((uint)Volatile.Read(ref _configGeneration));
            writer.U16(_queueSelect);
            writer.Bool(_active);
            lock (_irqLock) writer.U8(_isr);
            for (int i = 0; i < _queues.Length; i++)
            {
                var q = _queues[i];
                writer.U16(q.Size);
                writer.U64(q.Desc);
                writer.U64(q.Driver);
                writer.U64(q.Device);
                writer.Bool(q.Enabled);
                writer.U16((ushort)Volatile.Read(ref _queueVectors[i]));
                writer.U8((byte)q.LastError);
                if (!q.Enabled) continue;
                writer.U16(q.Queue!.NextAvail);
                writer.U16(q.Queue.NextUsed);
                writer.U8((byte)q.Queue.Error);
            }
        }
    }

    /// <summary>
    /// Loads a state saved by a transport of the same device. Everything is checked first (features the device does
    /// not offer, vectors the table does not have, queue sizes, rings outside guest RAM, an active device without
    /// DRIVER_OK and FEATURES_OK): a refused state leaves the device as it was. Then the device is reset and, when the
    /// state was active, activated again on the saved rings, quiesced if the transport is (a restore quiesces first
    /// and resumes once the whole machine is loaded).
    /// </summary>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version}");
        ushort type = r.U16();
        r.Check(type == _device.DeviceType, $"a state of virtio device type {type}, not {_device.DeviceType}");
        int queueCount = r.U16();
        r.Check(queueCount == _queues.Length, $"{queueCount} queues (this device has {_queues.Length})");
        uint deviceFeatureSelect = r.U32(), driverFeatureSelect = r.U32();
        ulong features = r.U64();
        byte status = r.U8();
        ushort configVector = r.U16();
        uint generation = r.U32();
        ushort queueSelect = r.U16();
        bool active = r.Bool();
        byte isr = r.U8();
        r.Check((features & ~_deviceFeatures) == 0, $"driver features 0x{features:x} the device does not offer (0x{_deviceFeatures:x})");
        r.Check(VectorInRange(configVector), $"config vector {configVector}");
        r.Check((isr & ~(IsrQueue | IsrConfig)) == 0, $"ISR 0x{isr:x2}");
        const int ready = VirtioStatus.DriverOk | VirtioStatus.FeaturesOk;
        r.Check((status & 0x30) == 0, $"device status 0x{status:x2} has reserved bits");
        r.Check((status & VirtioStatus.FeaturesOk) == 0 || (features & VirtioFeatures.Version1) != 0, "FEATURES_OK without VIRTIO_F_VERSION_1");
        r.Check(!active || (status & ready) == ready, $"an active device with status 0x{status:x2}");

        bool eventIdx = (features & VirtioFeatures.EventIdx) != 0;
        var queues = new (ushort Size, ulong Desc, ulong Driver, ulong Device, bool Enabled, ushort Vector, VirtqueueError LastError, SplitQueue? Queue)[queueCount];
        for (int i = 0; i < queueCount; i++)
        {
            ushort size = r.U16();
            ulong desc = r.U64(), driver = r.U64(), device = r.U64();
            bool enabled = r.Bool();
            ushort vector = r.U16();
            var lastError = (VirtqueueError)r.U8();
            r.Check(size != 0 && size <= _queues[i].MaxSize && BitOperations.IsPow2((uint)size), $"queue {i} size {size}");
            r.Check(VectorInRange(vector), $"queue {i} vector {vector}");
            r.Check(lastError <= VirtqueueError.RingReadOnly && (!enabled || lastError == VirtqueueError.None), $"queue {i} error {(int)lastError}");
            SplitQueue? queue = null;
            if (enabled)
            {
                ushort nextAvail = r.U16(), nextUsed = r.U16();
                var error = (VirtqueueError)r.U8();
                r.Check(error is VirtqueueError.None or VirtqueueError.AvailIndexTooFar or VirtqueueError.HeadIndexOutOfRange,
                    $"queue {i} ring error {(int)error}");
                var config = new SplitQueueConfig(size, new GuestAddress(desc), new GuestAddress(driver), new GuestAddress(device), eventIdx);
                var created = SplitQueue.TryCreate(_memory, config, out queue);
                r.Check(created == VirtqueueError.None, $"queue {i}'s rings are not usable in this guest's memory ({created})");
                queue!.RestoreState(nextAvail, nextUsed, error);
            }
            queues[i] = (size, desc, driver, device, enabled, vector, lastError, queue);
        }
        r.End();

        lock (_lock)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(VirtioPciDevice));
            if (_active)
            {
                _device.Reset();
                _active = false;
            }
            for (int i = 0; i < _queues.Length; i++)
            {
                var q = _queues[i];
                var s = queues[i];
                q.Size = s.Size;
                q.Desc = s.Desc;
                q.Driver = s.Driver;
                q.Device = s.Device;
                q.Enabled = s.Enabled;
                q.Queue = s.Queue;
                q.LastError = s.LastError;
                Volatile.Write(ref _queueVectors[i], s.Vector);
                _notify[i].Consume();
            }
            _deviceFeatureSelect = deviceFeatureSelect;
            _driverFeatureSelect = driverFeatureSelect;
            _driverFeatures = features;
            _queueSelect = queueSelect;
            Volatile.Write(ref _configVector, configVector);
            Volatile.Write(ref _configGeneration, (int)generation);
            Volatile.Write(ref _status, status);
            lock (_irqLock)
            {
                _isr = isr;
                UpdateLine();
            }
            _restored = true;
            if (active) Activate();
        }
    }

    /// <summary>The device's next available and next used index of an enabled queue, else null (tests, diagnostics).</summary>
    internal (ushort NextAvail, ushort NextUsed)? QueueIndices(int queue)
    {
        lock (_lock)
            return (uint)queue < (uint)_queues.Length && _queues[queue].Queue is { } q ? (q.NextAvail, q.NextUsed) : null;
    }

    private bool VectorInRange(ushort vector) => vector == NoVector || (_msix is not null && vector < _msix.Count);
}
