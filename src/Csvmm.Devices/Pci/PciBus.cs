namespace Csvmm.Devices.Pci;

/// <summary>
/// PCI bus 0: a table from device (0-31) and function (0-7) numbers to <see cref="IPciFunction"/>s. Functions are
/// added while the machine is built (duplicates refused) and the table is frozen before the vCPUs start; lookups
/// are a plain array index, safe from every vCPU thread. Absent functions read all-ones and ignore writes.
/// </summary>
public sealed class PciBus
{
    /// <summary>Device numbers per bus.</summary>
    public const int MaxDevices = 32;

    /// <summary>Function numbers per device.</summary>
    public const int MaxFunctions = 8;

    private readonly IPciFunction?[] _functions = new IPciFunction?[MaxDevices * MaxFunctions];
    private readonly string?[] _names = new string?[MaxDevices * MaxFunctions];
    private volatile bool _frozen;
    private long _absentAccesses;

    /// <summary>Whether <see cref="Freeze"/> was called.</summary>
    public bool IsFrozen => _frozen;

    /// <summary>Configuration accesses to functions that do not exist (firmware and Linux scan for them).</summary>
    public long AbsentAccesses => Interlocked.Read(ref _absentAccesses);

    /// <summary>Puts <paramref name="function"/> at 00:<paramref name="device"/>.<paramref name="functionNumber"/>.</summary>
    /// <param name="name">For diagnostics; defaults to the function's type name.</param>
    public void Add(int device, int functionNumber, IPciFunction function, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(function);
        name ??= function.GetType().Name;
        if (_frozen) throw new DeviceException($"PCI bus is frozen; cannot add {name} at 00:{device:x2}.{functionNumber}");
        if ((uint)device >= MaxDevices || (uint)functionNumber >= MaxFunctions)
            throw new DeviceException($"PCI address {device}.{functionNumber} for {name} is out of range (device 0-31, function 0-7)");
        int slot = Slot(device, functionNumber);
        if (_functions[slot] is not null)
            throw new DeviceException($"PCI address 00:{device:x2}.{functionNumber} of {name} is taken by {_names[slot]}");
        _functions[slot] = function;
        _names[slot] = name;
    }

    /// <summary>Refuses further <see cref="Add"/> calls. Call before the vCPUs start.</summary>
    public void Freeze() => _frozen = true;

    /// <summary>The function at 00:<paramref name="device"/>.<paramref name="functionNumber"/>, or null.</summary>
    public IPciFunction? Get(int device, int functionNumber) =>
        (uint)device < MaxDevices && (uint)functionNumber < MaxFunctions ? _functions[Slot(device, functionNumber)] : null;

    /// <summary>Every function on the bus in address order (for table builders and diagnostics).</summary>
    public IEnumerable<(int Device, int Function, IPciFunction Value, string Name)> Functions
    {
        get
        {
            for (int slot = 0; slot < _functions.Length; slot++)
                if (_functions[slot] is { } f) yield return (slot / MaxFunctions, slot % MaxFunctions, f, _names[slot]!);
        }
    }

    /// <summary>A configuration read; all-ones if no such function.</summary>
    public void ReadConfig(int device, int functionNumber, int offset, Span<byte> data)
    {
        if (Get(device, functionNumber) is { } f)
        {
            f.ReadConfig(offset, data);
            return;
        }
        data.Fill(0xFF);
        Interlocked.Increment(ref _absentAccesses);
    }

    /// <summary>
    /// Called after every configuration write that reached a function, with the function and the written byte
    /// range: the BAR router listens for command-register and BAR changes. Set while the machine is built.
    /// </summary>
    public Action<IPciFunction, int, int>? ConfigWritten { get; set; }

    /// <summary>A configuration write; dropped if no such function.</summary>
    public void WriteConfig(int device, int functionNumber, int offset, ReadOnlySpan<byte> data)
    {
        if (Get(device, functionNumber) is { } f)
        {
            f.WriteConfig(offset, data);
            ConfigWritten?.Invoke(f, offset, data.Length);
            return;
        }
        Interlocked.Increment(ref _absentAccesses);
    }

    private static int Slot(int device, int functionNumber) => device * MaxFunctions + functionNumber;
}
