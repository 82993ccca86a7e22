using System.Buffers.Binary;
using System.Numerics;
using Csvmm.Devices;
using Csvmm.Devices.Pci;
using Csvmm.Sys;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>A queue notification register: the machine registers a KVM ioeventfd (any access length) at its address.</summary>
/// <param name="Queue">Virtio queue index.</param>
/// <param name="Bar">BAR holding the register.</param>
/// <param name="Offset">Offset of the register inside the BAR.</param>
/// <param name="Event">The eventfd the device's I/O thread waits on.</param>
public sealed record VirtioDoorbell(int Queue, int Bar, ulong Offset, EventFdHandle Event);

/// <summary>
/// The virtio 1.x ("modern") PCI transport (virtio 1.2 §4.1) for one <see cref="IVirtioDevice"/>: a PCI function
/// with vendor 0x1AF4, device 0x1040 + device type, revision 1, and one BAR with every virtio structure.
/// </summary>
/// <remarks>
/// <para><b>BAR 0</b> is a 32-bit non-prefetchable memory BAR of <see cref="BarSize"/> bytes (32-bit so that
/// firmware and the guest place it in the PCI hole below 4 GiB where the machine's router decodes): common
/// configuration at 0x0000, ISR at 0x1000, device configuration at 0x2000, notifications at 0x3000 (queue q at
/// 0x3000 + 4q, notify_off_multiplier 4), MSI-X table at 0x4000 and PBA at 0x5000. Each structure has its own
/// page, as in QEMU. The vendor capabilities (ID 0x09, cfg_type 1-4) point at them; VIRTIO_PCI_CAP_PCI_CFG is not
/// offered.</para>
/// <para><b>Interrupts</b>: MSI-X through <see cref="MsixTable"/> when the guest enabled it (config vector and one
/// vector per queue as the driver assigned them), otherwise INTx (pin A) through the level line with ISR bits.</para>
/// <para><b>Threads</b>: guest accesses come from vCPU threads and take one lock; the device's I/O thread only
/// touches the interrupt state (its own small lock) and never the transport's lock, so a reset (which joins the
/// I/O thread while holding the transport lock) cannot deadlock. Guest accesses never throw; accesses of the
/// wrong width or offset read zero and are ignored.</para>
/// <para>The transport owns the device: <see cref="Dispose"/> resets and disposes it.</para>
/// </remarks>
public sealed partial class VirtioPciDevice : IPciBarFunction, IDisposable
{
    /// <summary>Virtio's PCI vendor ID.</summary>
    public const ushort VendorId = 0x1AF4;
    /// <summary>Modern device IDs are 0x1040 + the virtio device type.</summary>
    public const ushort DeviceIdBase = 0x1040;
    /// <summary>The BAR holding every structure.</summary>
    public const int Bar = 0;
    /// <summary>Size of BAR 0.</summary>
    public const uint BarSize = 0x8000;
    /// <summary>Region offsets inside BAR 0.</summary>
    public const uint CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceConfigOffset = 0x2000, NotifyOffset = 0x3000,
        MsixTableOffset = 0x4000, MsixPbaOffset = 0x5000;
    /// <summary>Bytes per queue in the notification region (notify_off_multiplier).</summary>
    public const uint NotifyMultiplier = 4;
    /// <summary>Length of the common configuration structure (virtio 1.2 without the RING_RESET fields).</summary>
    public const uint CommonLength = 0x38;
    /// <summary>"No MSI-X vector" in config_msix_vector / queue_msix_vector.</summary>
    public const ushort NoVector = 0xFFFF;
    /// <summary>Vendor-specific capability ID and virtio structure types.</summary>
    public const byte VendorCapabilityId = 0x09, CfgCommon = 1, CfgNotify = 2, CfgIsr = 3, CfgDevice = 4, CfgPci = 5;
    /// <summary>ISR bits.</summary>
    public const byte IsrQueue = 1, IsrConfig = 2;

    private const int RegionSize = 0x1000;
    private const ulong SupportedTransportFeatures = VirtioFeatures.Version1 | VirtioFeatures.IndirectDesc | VirtioFeatures.EventIdx;

    // Common configuration offsets (virtio 1.2 §4.1.4.3).
    private const int DeviceFeatureSelect = 0x00, DeviceFeature = 0x04, DriverFeatureSelect = 0x08, DriverFeature = 0x0C,
        ConfigMsixVector = 0x10, NumQueues = 0x12, DeviceStatus = 0x14, ConfigGeneration = 0x15, QueueSelect = 0x16,
        QueueSize = 0x18, QueueMsixVector = 0x1A, QueueEnable = 0x1C, QueueNotifyOff = 0x1E, QueueDesc = 0x20,
        QueueDriver = 0x28, QueueDevice = 0x30;

    private readonly IVirtioDevice _device;
    private readonly GuestMemory _memory;
    private readonly IIrqLine _intx;
    private readonly MsixTable? _msix;
    private readonly ulong _deviceFeatures;
    private readonly Lock _lock = new();      // guest register state (vCPU threads)
    private readonly Lock _irqLock = new();   // ISR and the INTx level (vCPU and I/O threads)
    private readonly QueueState[] _queues;
    private readonly int[] _queueVectors;     // read by the I/O thread without _lock
    private readonly EventFdHandle[] _notify;
    private readonly BarDevice _bar;

    private uint _deviceFeatureSelect, _driverFeatureSelect;
    private ulong _driverFeatures;
    private int _status;                      // Interlocked: the I/O thread may OR in DEVICE_NEEDS_RESET
    private int _configVector = NoVector;
    private int _configGeneration;
    private ushort _queueSelect;
    private bool _active, _disposed, _quiesced, _restored;
    private byte _isr;
    private bool _lineHigh;
    private long _notifications, _badAccesses, _resets;

    /// <param name="device">The device; the transport owns it from now on.</param>
    /// <param name="memory">Guest memory the rings live in.</param>
    /// <param name="intx">The function's INTA line (level).</param>
    /// <param name="msiVectors">
    /// The function's MSI-X vectors (<see cref="MsixVectorsFor"/> of them is what the driver wants: one per queue plus
    /// one for configuration changes; at most 256), or null for an INTx-only function without the capability.
    /// </param>
    public VirtioPciDevice(IVirtioDevice device, GuestMemory memory, IIrqLine intx, IMsiVectors? msiVectors)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(intx);
        int queueCount = device.QueueCount;
        if (queueCount is < 1 or > (int)(RegionSize / NotifyMultiplier))
            throw new DeviceException($"virtio device type {device.DeviceType}: {queueCount} queues is outside [1, {RegionSize / NotifyMultiplier}]");
        if (device.ConfigSize is < 0 or > RegionSize)
            throw new DeviceException($"virtio device type {device.DeviceType}: configuration of {device.ConfigSize} bytes does not fit its region");
        if ((device.DeviceFeatures & VirtioFeatures.Version1) == 0)
            throw new DeviceException($"virtio device type {device.DeviceType} does not offer VIRTIO_F_VERSION_1");
        if (msiVectors is not null && msiVectors.Count * MsixTable.EntrySize > RegionSize)
            throw new DeviceException($"{msiVectors.Count} MSI-X vectors do not fit the table region");

        _device = device;
        _memory = memory;
        _intx = intx;
        _deviceFeatures = device.DeviceFeatures;
        _queues = new QueueState[queueCount];
        _queueVectors = new int[queueCount];
        _notify = new EventFdHandle[queueCount];
        var doorbells = new VirtioDoorbell[queueCount];
        for (int q = 0; q < queueCount; q++)
        {
            ushort max = device.MaxQueueSize(q);
            if (max == 0 || max > Virtq.MaxQueueSize || !BitOperations.IsPow2((int)max))
                throw new DeviceException($"virtio queue {q}: maximum size {max} is not a power of two in [1, {Virtq.MaxQueueSize}]");
            _queues[q] = new QueueState(max);
            _queueVectors[q] = NoVector;
            _notify[q] = EventFdHandle.Create();
            doorbells[q] = new VirtioDoorbell(q, Bar, NotifyOffset + NotifyMultiplier * (uint)q, _notify[q]);
        }
        Doorbells = doorbells;

        Config = new PciConfigSpace(VendorId, (ushort)(DeviceIdBase + device.DeviceType), device.PciClassCode, revision: 1,
            subsystemVendorId: VendorId, subsystemId: device.DeviceType);
        Config.SetByte(PciConfigSpace.InterruptPinOffset, 1); // INTA#
        Config.AddMemoryBar(Bar, BarSize);
        AddVirtioCapability(CfgCommon, CommonOffset, CommonLength);
        AddVirtioCapability(CfgNotify, NotifyOffset, NotifyMultiplier * (uint)queueCount, NotifyMultiplier);
        AddVirtioCapability(CfgIsr, IsrOffset, 1);
        if (device.ConfigSize > 0) AddVirtioCapability(CfgDevice, DeviceConfigOffset, (uint)device.ConfigSize);
        if (msiVectors is not null) _msix = new MsixTable(Config, msiVectors, Bar, MsixTableOffset, MsixPbaOffset);

        _bar = new BarDevice(this);
        Interrupt = new InterruptSink(this);
    }

    /// <summary>MSI-X vectors a driver uses for <paramref name="device"/>: one per queue and one for configuration changes.</summary>
    public static int MsixVectorsFor(IVirtioDevice device) => device.QueueCount + 1;

    /// <summary>The function's configuration space.</summary>
    public PciConfigSpace Config { get; }

    /// <summary>The device behind this transport.</summary>
    public IVirtioDevice Device => _device;

    /// <summary>The MSI-X table, or null when the function has no MSI-X capability.</summary>
    public MsixTable? Msix => _msix;

    /// <summary>One notification register per queue: register KVM ioeventfds there so notifications never exit.</summary>
    public IReadOnlyList<VirtioDoorbell> Doorbells { get; }

    /// <summary>The device status register as the driver sees it.</summary>
    public byte Status => (byte)Volatile.Read(ref _status);

    /// <summary>The features the driver has written (valid once FEATURES_OK is set).</summary>
    public ulong DriverFeatures { get { lock (_lock) return _driverFeatures; } }

    /// <summary>True between DRIVER_OK and the next reset.</summary>
    public bool IsActive { get { lock (_lock) return _active; } }

    /// <summary>Notification-region writes that reached userspace (the slow path without an ioeventfd).</summary>
    public long SlowNotifications => Interlocked.Read(ref _notifications);

    /// <summary>Guest accesses of a width or at an offset no register has.</summary>
    public long BadAccesses => Interlocked.Read(ref _badAccesses);

    /// <summary>Device resets the driver asked for.</summary>
    public long Resets => Interlocked.Read(ref _resets);

    /// <summary>The interrupt side as the device sees it (exposed for tests and diagnostics).</summary>
    internal IVirtioInterrupt Interrupt { get; }

    /// <inheritdoc/>
    public IBusDevice? GetBarDevice(int bar) => bar == Bar ? _bar : null;

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        Config.Write(offset, data);
        _msix?.ConfigWritten(offset, data.Length);
        if (offset < PciConfigSpace.CommandOffset + 2 && offset + data.Length > PciConfigSpace.CommandOffset)
            lock (_irqLock) UpdateLine(); // Interrupt Disable may have changed
    }

    /// <summary>
    /// Tells the driver the device configuration changed (e.g. a resized disk): bumps config_generation and sends a
    /// configuration interrupt.
    /// </summary>
    public void NotifyConfigChanged()
    {
        Interlocked.Increment(ref _configGeneration);
        Interrupt.SignalConfig();
    }

    private void AddVirtioCapability(byte type, uint offset, uint length, uint? multiplier = null)
    {
        Span<byte> body = stackalloc byte[multiplier is null ? 14 : 18];
        body.Clear();
        body[0] = (byte)(body.Length + 2); // cap_len
        body[1] = type;
        body[2] = Bar;
        BinaryPrimitives.WriteUInt32LittleEndian(body[6..], offset);
        BinaryPrimitives.WriteUInt32LittleEndian(body[10..], length);
        if (multiplier is { } m) BinaryPrimitives.WriteUInt32LittleEndian(body[14..], m);
        Config.AddCapability(VendorCapabilityId, body);
    }

    // ---- BAR decode -----------------------------------------------------------------------------------

    private void BarRead(ulong offset, Span<byte> data)
    {
        if (offset >= BarSize || data.Length is not (1 or 2 or 4 or 8))
        {
            Bad(data);
            return;
        }
        uint region = (uint)offset & ~(uint)(RegionSize - 1);
        int inner = (int)(offset - region);
        switch (region)
        {
            case CommonOffset: ReadCommon(inner, data); break;
            case IsrOffset:
                if (inner != 0) { Bad(data); break; }
                data.Clear();
                data[0] = ReadAndClearIsr();
                break;
            case DeviceConfigOffset:
                if (inner + data.Length > _device.ConfigSize) { Bad(data); break; }
                _device.ReadConfig(inner, data);
                break;
            case MsixTableOffset when _msix is not null: _msix.ReadTable((ulong)inner, data); break;
            case MsixPbaOffset when _msix is not null: _msix.ReadPba((ulong)inner, data); break;
            default: data.Clear(); break; // the notification region and padding read 0
        }
    }

    private void BarWrite(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= BarSize || data.Length is not (1 or 2 or 4 or 8))
        {
            Interlocked.Increment(ref _badAccesses);
            return;
        }
        uint region = (uint)offset & ~(uint)(RegionSize - 1);
        int inner = (int)(offset - region);
        switch (region)
        {
            case CommonOffset: WriteCommon(inner, data); break;
            case DeviceConfigOffset:
                if (inner + data.Length > _device.ConfigSize) { Interlocked.Increment(ref _badAccesses); break; }
                _device.WriteConfig(inner, data);
                break;
            case NotifyOffset:
                // Any width at a queue's register notifies it; the value (the queue index) carries nothing more.
                if (inner % NotifyMultiplier == 0 && inner / NotifyMultiplier < _queues.Length && !Volatile.Read(ref _disposed))
                {
                    Interlocked.Increment(ref _notifications);
                    _notify[inner / NotifyMultiplier].Signal();
                }
                else Interlocked.Increment(ref _badAccesses);
                break;
            case MsixTableOffset when _msix is not null: _msix.WriteTable((ulong)inner, data); break;
            default: Interlocked.Increment(ref _badAccesses); break; // ISR, PBA and padding are read-only
        }
    }

    private void Bad(Span<byte> data)
    {
        Interlocked.Increment(ref _badAccesses);
        data.Clear();
    }

    // ---- common configuration ---------------------------------------------------------------------------

    private void ReadCommon(int offset, Span<byte> data)
    {
        int width = data.Length;
        ulong value;
        lock (_lock)
        {
            QueueState? q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
            switch (offset, width)
            {
                case (DeviceFeatureSelect, 4): value = _deviceFeatureSelect; break;
                case (DeviceFeature, 4): value = _deviceFeatureSelect < 2 ? (uint)(_deviceFeatures >> (32 * (int)_deviceFeatureSelect)) : 0u; break;
                case (DriverFeatureSelect, 4): value = _driverFeatureSelect; break;
                case (DriverFeature, 4): value = _driverFeatureSelect < 2 ? (uint)(_driverFeatures >> (32 * (int)_driverFeatureSelect)) : 0u; break;
                case (ConfigMsixVector, 2): value = (ushort)_configVector; break;
                case (NumQueues, 2): value = (ushort)_queues.Length; break;
                case (DeviceStatus, 1): value = (byte)Volatile.Read(ref _status); break;
                case (ConfigGeneration, 1): value = (byte)Volatile.Read(ref _configGeneration); break;
                case (QueueSelect, 2): value = _queueSelect; break;
                case (QueueSize, 2): value = q?.Size ?? 0; break;
                case (QueueMsixVector, 2): value = q is null ? NoVector : (ushort)_queueVectors[_queueSelect]; break;
                case (QueueEnable, 2): value = q is { Enabled: true } ? 1u : 0u; break;
                case (QueueNotifyOff, 2): value = q is null ? 0u : _queueSelect; break;
                case (QueueDesc, 8): value = q?.Desc ?? 0; break;
                case (QueueDesc, 4): value = (uint)(q?.Desc ?? 0); break;
                case (QueueDesc + 4, 4): value = (q?.Desc ?? 0) >> 32; break;
                case (QueueDriver, 8): value = q?.Driver ?? 0; break;
                case (QueueDriver, 4): value = (uint)(q?.Driver ?? 0); break;
                case (QueueDriver + 4, 4): value = (q?.Driver ?? 0) >> 32; break;
                case (QueueDevice, 8): value = q?.Device ?? 0; break;
                case (QueueDevice, 4): value = (uint)(q?.Device ?? 0); break;
                case (QueueDevice + 4, 4): value = (q?.Device ?? 0) >> 32; break;
                default:
                    Interlocked.Increment(ref _badAccesses);
                    value = 0;
                    break;
            }
        }
        BusData.Set(data, value);
    }

    private void WriteCommon(int offset, ReadOnlySpan<byte> data)
    {
        int width = data.Length;
        ulong value = BusData.Get(data);
        lock (_lock)
        {
            if (_disposed) return;
            QueueState? q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
            // Queue addresses and size are fixed while the queue is enabled.
            QueueState? writableQueue = q is { Enabled: false } ? q : null;
            switch (offset, width)
            {
                case (DeviceFeatureSelect, 4): _deviceFeatureSelect = (uint)value; break;
                case (DriverFeatureSelect, 4): _driverFeatureSelect = (uint)value; break;
                case (DriverFeature, 4):
                    // Features are fixed once FEATURES_OK is set.
                    if (_driverFeatureSelect < 2 && (Volatile.Read(ref _status) & VirtioStatus.FeaturesOk) == 0)
                    {
                        int shift = 32 * (int)_driverFeatureSelect;
                        _driverFeatures = (_driverFeatures & ~(0xFFFF_FFFFUL << shift)) | (value << shift);
                    }
                    break;
                case (ConfigMsixVector, 2): Volatile.Write(ref _configVector, ValidVector(value)); break;
                case (DeviceStatus, 1): WriteStatus((byte)value); break;
                case (QueueSelect, 2): _queueSelect = (ushort)value; break;
                case (QueueSize, 2):
                    if (writableQueue is not null && value != 0 && value <= writableQueue.MaxSize && BitOperations.IsPow2(value))
                        writableQueue.Size = (ushort)value;
                    break;
                case (QueueMsixVector, 2):
                    if (q is not null) Volatile.Write(ref _queueVectors[_queueSelect], ValidVector(value));
                    break;
                case (QueueEnable, 2):
                    // Writing 0 is not allowed without VIRTIO_F_RING_RESET (not offered): ignored.
                    if (writableQueue is not null && value == 1) EnableQueue(writableQueue);
                    break;
                case (QueueDesc, 8): if (writableQueue is not null) writableQueue.Desc = value; break;
                case (QueueDesc, 4): if (writableQueue is not null) writableQueue.Desc = Low(writableQueue.Desc, value); break;
                case (QueueDesc + 4, 4): if (writableQueue is not null) writableQueue.Desc = High(writableQueue.Desc, value); break;
                case (QueueDriver, 8): if (writableQueue is not null) writableQueue.Driver = value; break;
                case (QueueDriver, 4): if (writableQueue is not null) writableQueue.Driver = Low(writableQueue.Driver, value); break;
                case (QueueDriver + 4, 4): if (writableQueue is not null) writableQueue.Driver = High(writableQueue.Driver, value); break;
                case (QueueDevice, 8): if (writableQueue is not null) writableQueue.Device = value; break;
                case (QueueDevice, 4): if (writableQueue is not null) writableQueue.Device = Low(writableQueue.Device, value); break;
                case (QueueDevice + 4, 4): if (writableQueue is not null) writableQueue.Device = High(writableQueue.Device, value); break;
                default: Interlocked.Increment(ref _badAccesses); break;
            }
        }
    }

    private static ulong Low(ulong old, ulong value) => (old & 0xFFFF_FFFF_0000_0000UL) | (uint)value;
    private static ulong High(ulong old, ulong value) => (old & 0xFFFF_FFFFUL) | (value << 32);

    private int ValidVector(ulong value) =>
        _msix is not null && value < (ulong)_msix.Count ? (int)value : NoVector;

    /// <summary>Caller holds _lock.</summary>
    private void WriteStatus(byte value)
    {
        if (value == 0)
        {
            ResetDevice();
            return;
        }
        int old = Volatile.Read(ref _status);
        int next = (value & ~VirtioStatus.DeviceNeedsReset) | (old & VirtioStatus.DeviceNeedsReset);
        if ((next & VirtioStatus.FeaturesOk) != 0 && (old & VirtioStatus.FeaturesOk) == 0 && !FeaturesAcceptable())
            next &= ~VirtioStatus.FeaturesOk; // refused: the driver reads the bit back clear
        // The I/O thread may have set DEVICE_NEEDS_RESET meanwhile: keep it.
        while (true)
        {
            int seen = Interlocked.CompareExchange(ref _status, next, old);
            if (seen == old) break;
            old = seen;
            next |= seen & VirtioStatus.DeviceNeedsReset;
        }
        const int ready = VirtioStatus.DriverOk | VirtioStatus.FeaturesOk;
        if (!_active && (next & ready) == ready && (next & (VirtioStatus.DeviceNeedsReset | VirtioStatus.Failed)) == 0)
            Activate();
    }

    private bool FeaturesAcceptable() =>
        (_driverFeatures & ~_deviceFeatures) == 0 && (_driverFeatures & VirtioFeatures.Version1) != 0;

    /// <summary>Caller holds _lock.</summary>
    private void EnableQueue(QueueState q)
    {
        bool eventIdx = (_driverFeatures & VirtioFeatures.EventIdx) != 0;
        var config = new SplitQueueConfig(q.Size, new GuestAddress(q.Desc), new GuestAddress(q.Driver), new GuestAddress(q.Device), eventIdx);
        var error = SplitQueue.TryCreate(_memory, config, out var queue);
        q.LastError = error;
        if (error != VirtqueueError.None)
        {
            Interrupt.SetNeedsReset();
            return;
        }
        q.Queue = queue;
        q.Enabled = true;
    }

    /// <summary>Caller holds _lock.</summary>
    private void Activate()
    {
        var list = new List<VirtioQueue>();
        for (int i = 0; i < _queues.Length; i++)
            if (_queues[i] is { Enabled: true, Queue: { } sq }) list.Add(new VirtioQueue(i, sq, _notify[i]));
        try
        {
            _device.Activate(new VirtioActivation(_memory, _driverFeatures, list, Interrupt, _quiesced));
            _active = true;
        }
        catch (Exception e) when (e is InvalidOperationException or OutOfMemoryException or SysException or ThreadStartException)
        {
            // The device could not start (no thread, no eventfd): the driver sees DEVICE_NEEDS_RESET, the VMM lives on.
            ActivationError = e;
            Interrupt.SetNeedsReset();
        }
    }

    /// <summary>Why the last activation failed, if it did (diagnostics).</summary>
    public Exception? ActivationError { get; private set; }

    /// <summary>Why queue_enable last failed for the queue, or None (diagnostics and tests).</summary>
    public VirtqueueError QueueError(int queue)
    {
        lock (_lock) return (uint)queue < (uint)_queues.Length ? _queues[queue].LastError : VirtqueueError.None;
    }

    /// <summary>Writing 0 to device_status. Caller holds _lock.</summary>
    private void ResetDevice()
    {
        Interlocked.Increment(ref _resets);
        if (_active)
        {
            _device.Reset(); // returns once the I/O thread has stopped: nothing touches the rings after this
            _active = false;
        }
        for (int i = 0; i < _queues.Length; i++)
        {
            _queues[i].Reset();
            Volatile.Write(ref _queueVectors[i], NoVector);
            _notify[i].Consume();
        }
        _deviceFeatureSelect = 0;
        _driverFeatureSelect = 0;
        _driverFeatures = 0;
        _queueSelect = 0;
        Volatile.Write(ref _configVector, NoVector);
        Volatile.Write(ref _status, 0);
        lock (_irqLock)
        {
            _isr = 0;
            UpdateLine();
        }
    }

    // ---- interrupts -----------------------------------------------------------------------------------

    private byte ReadAndClearIsr()
    {
        lock (_irqLock)
        {
            byte v = _isr;
            _isr = 0;
            UpdateLine();
            return v;
        }
    }

    private void RaiseIntx(byte bit)
    {
        lock (_irqLock)
        {
            _isr |= bit;
            UpdateLine();
        }
    }

    /// <summary>Drives INTx from the ISR and the command register's Interrupt Disable. Caller holds _irqLock.</summary>
    private void UpdateLine()
    {
        bool level = _isr != 0 && (Config.Command & PciConfigSpace.CommandInterruptDisable) == 0;
        if (level == _lineHigh) return;
        _lineHigh = level;
        _intx.Set(level);
    }

    /// <summary>The INTx level the transport drives right now.</summary>
    public bool IntxLevel { get { lock (_irqLock) return _lineHigh; } }

    private void Signal(int vector, byte isrBit)
    {
        // MsixTable.Signal is false only while MSI-X is disabled: then INTx. With MSI-X on, NO_VECTOR means no interrupt.
        if (_msix is not null && _msix.Signal(vector == NoVector ? -1 : vector)) return;
        RaiseIntx(isrBit);
    }

    /// <summary>
    /// A platform reset of the whole function: the virtio reset (I/O thread stopped, queues dropped) plus the MSI-X
    /// table back to power-on state with MSI-X disabled. BAR addresses and the command register are left to firmware.
    /// </summary>
    public void ResetFunction()
    {
        lock (_lock)
        {
            if (_disposed) return;
            ResetDevice();
        }
        if (_msix is { } msix)
        {
            msix.Reset();
            Config.SetWord(msix.CapabilityOffset + 2, (ushort)(msix.Count - 1));
        }
    }

    /// <summary>Resets the device and closes the notification eventfds; the machine drops its ioeventfds first.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (_active)
            {
                _device.Reset();
                _active = false;
            }
            _disposed = true;
        }
        _device.Dispose();
        foreach (var e in _notify) e.Dispose();
    }

    private sealed class QueueState(ushort maxSize)
    {
        public ushort MaxSize { get; } = maxSize;
        public ushort Size = maxSize;
        public ulong Desc, Driver, Device;
        public bool Enabled;
        public SplitQueue? Queue;
        public VirtqueueError LastError;

        public void Reset()
        {
            Size = MaxSize;
            Desc = Driver = Device = 0;
            Enabled = false;
            Queue = null;
            LastError = VirtqueueError.None;
        }
    }

    private sealed class BarDevice(VirtioPciDevice owner) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => owner.BarRead(offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => owner.BarWrite(offset, data);
    }

    private sealed class InterruptSink(VirtioPciDevice owner) : IVirtioInterrupt
    {
        public void SignalQueue(int queue)
        {
            int vector = (uint)queue < (uint)owner._queueVectors.Length ? Volatile.Read(ref owner._queueVectors[queue]) : NoVector;
            owner.Signal(vector, IsrQueue);
        }

        public void SignalConfig() => owner.Signal(Volatile.Read(ref owner._configVector), IsrConfig);

        public void SetNeedsReset()
        {
            Interlocked.Or(ref owner._status, VirtioStatus.DeviceNeedsReset);
            SignalConfig();
        }
    }
}
