using System.Text;

namespace Csvmm.Devices.State;

/// <summary>
/// The machine's stateful devices by stable id ("com1", "cmos"...), the machine deciding the ids as it decides
/// addresses. <see cref="SaveAll"/> writes one self-checking blob of every device's record; <see cref="LoadAll"/>
/// loads one back all or nothing: the ids must be exactly this machine's, every record must be intact, and if any
/// device refuses its state, the ones already loaded are put back as they were.
/// </summary>
public sealed class DeviceStateSet
{
    private const uint Magic = 0x56445343; // "CSDV" little-endian
    private const int MaxIdLength = 64;
    private const ushort Version = 1;
    private readonly List<(string Id, IStatefulDevice Device)> _devices = [];

    /// <summary>The ids, in the order they were added (and are saved).</summary>
    public IReadOnlyList<string> Ids => _devices.ConvertAll(d => d.Id);

    /// <summary>Adds a device under a unique id (printable ASCII, at most 64 characters).</summary>
    public void Add(string id, IStatefulDevice device)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        ArgumentNullException.ThrowIfNull(device);
        if (id.Length > MaxIdLength || id.Any(c => c is < '!' or > '~'))
            throw new ArgumentException($"device state id '{id}' must be 1 to {MaxIdLength} printable ASCII characters", nameof(id));
        if (_devices.Exists(d => d.Id == id))
            throw new ArgumentException($"device state id '{id}' is already taken", nameof(id));
        _devices.Add((id, device));
    }

    /// <summary>Every device's state record, in one blob: magic, version, count, (id, record) pairs, CRC-32C.</summary>
    public byte[] SaveAll()
    {
        var w = new StateWriter();
        w.U32(Magic);
        w.U16(Version);
        w.U32((uint)_devices.Count);
        foreach (var (id, device) in _devices)
        {
            w.Bytes(Encoding.ASCII.GetBytes(id));
            w.Bytes(DeviceStateRecord.Save(device));
        }
        w.U32(DeviceStateRecord.Crc32C(w.Written));
        return w.Written.ToArray();
    }

    /// <summary>Loads a blob from <see cref="SaveAll"/> into this machine's devices, all or nothing.</summary>
    /// <exception cref="DeviceStateException">The blob is damaged, is for another set of devices, or a device refused its state.</exception>
    public void LoadAll(ReadOnlySpan<byte> blob)
    {
        var r = new StateReader(blob, "device set");
        r.Check(blob.Length >= 4, "truncated");
        r.Check(DeviceStateRecord.Crc32C(blob[..^4]) == System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(blob[^4..]),
            "checksum mismatch (the blob is corrupted)");
        r.Check(r.U32() == Magic, "not a csvmm device state blob (bad magic)");
        ushort version = r.U16();
        r.Check(version == Version, $"version {version} is not one this csvmm reads");
        uint count = r.U32();
        r.Check(count == (uint)_devices.Count, $"it holds {count} devices, this machine has {_devices.Count}");
        var records = new Dictionary<string, byte[]>(_devices.Count);
        for (uint i = 0; i < count; i++)
        {
            string id = Encoding.ASCII.GetString(r.Bytes(MaxIdLength));
            byte[] record = r.Bytes(DeviceStateRecord.MaxStateLength + 256).ToArray();
            r.Check(_devices.Exists(d => d.Id == id), $"it holds a state for '{id}', which this machine does not have");
            r.Check(records.TryAdd(id, record), $"it holds two states for '{id}'");
        }
        r.U32(); // the checksum, verified above
        r.End();

        var loaded = new List<(IStatefulDevice Device, byte[] Previous)>(_devices.Count);
        try
        {
            foreach (var (id, device) in _devices)
            {
                byte[] previous = DeviceStateRecord.Save(device);
                try
                {
                    DeviceStateRecord.Load(device, records[id]);
                }
                catch (DeviceStateException e)
                {
                    throw new DeviceStateException($"{id}: {e.Message}");
                }
                loaded.Add((device, previous));
            }
        }
        catch (DeviceStateException)
        {
            // Put back what was already loaded: a refused blob leaves the machine as it was.
            for (int i = loaded.Count - 1; i >= 0; i--)
                DeviceStateRecord.Load(loaded[i].Device, loaded[i].Previous);
            throw;
        }
    }
}
