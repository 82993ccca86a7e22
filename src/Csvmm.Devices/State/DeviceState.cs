using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace Csvmm.Devices.State;

/// <summary>A saved device state that cannot be loaded: truncated, corrupted, of an unknown version, or with values no device could have.</summary>
public sealed class DeviceStateException(string message) : Exception(message);

/// <summary>
/// A device whose guest-visible state can be saved and loaded apart from how it was built: the machine builds
/// the device (wiring: IRQ lines, sinks, backends), then a snapshot or a migration loads what the guest had
/// programmed. The same code path serves save/restore and live migration.
/// </summary>
public interface IStatefulDevice
{
    /// <summary>What kind of device the state belongs to ("serial16550"): a state of another kind is refused.</summary>
    string StateKind { get; }

    /// <summary>The version <see cref="SaveState"/> writes. Loading accepts this one and any older one the device still documents.</summary>
    ushort StateVersion { get; }

    /// <summary>Writes the guest-visible state (registers, FIFOs, pending interrupts); not statistics, not host wiring.</summary>
    void SaveState(StateWriter writer);

    /// <summary>
    /// Replaces the state with a saved one. All or nothing: everything is read and validated before anything changes,
    /// so a bad state leaves the device as it was. Afterwards the device drives its interrupt line to match.
    /// </summary>
    /// <exception cref="DeviceStateException">Truncated, trailing bytes, an unknown version, or an impossible value.</exception>
    void LoadState(ReadOnlySpan<byte> state, ushort version);
}

/// <summary>Writes a device state: little-endian fixed-width fields and length-prefixed byte blocks, nothing else.</summary>
public sealed class StateWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    /// <summary>The bytes written so far.</summary>
    public ReadOnlySpan<byte> Written => _buffer.WrittenSpan;

    public void U8(byte value) => Put(value);

    public void Bool(bool value) => Put(value ? (byte)1 : (byte)0);

    public void U16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.GetSpan(2), value);
        _buffer.Advance(2);
    }

    public void U32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void U64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    /// <summary>A 32-bit length, then the bytes.</summary>
    public void Bytes(ReadOnlySpan<byte> value)
    {
        U32((uint)value.Length);
        value.CopyTo(_buffer.GetSpan(value.Length));
        _buffer.Advance(value.Length);
    }

    private void Put(byte value)
    {
        _buffer.GetSpan(1)[0] = value;
        _buffer.Advance(1);
    }
}

/// <summary>
/// Reads a device state back. Every read is bounds-checked: running past the end, a bool that is neither 0 nor 1,
/// a block longer than its limit, or bytes left over at <see cref="End"/> are <see cref="DeviceStateException"/>s
/// naming the device kind, never an out-of-range read.
/// </summary>
public ref struct StateReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _kind;
    private int _position;

    public StateReader(ReadOnlySpan<byte> data, string kind)
    {
        _data = data;
        _kind = kind;
        _position = 0;
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > _data.Length - _position)
            throw new DeviceStateException($"{_kind} state is truncated (needs {count} more bytes at offset {_position}, has {_data.Length - _position})");
        var slice = _data.Slice(_position, count);
        _position += count;
        return slice;
    }

    public byte U8() => Take(1)[0];

    public bool Bool()
    {
        byte b = U8();
        return b switch
        {
            0 => false,
            1 => true,
            _ => throw new DeviceStateException($"{_kind} state: a flag at offset {_position - 1} is {b}, not 0 or 1"),
        };
    }

    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    /// <summary>A length-prefixed block of at most <paramref name="maxLength"/> bytes.</summary>
    public ReadOnlySpan<byte> Bytes(int maxLength)
    {
        uint length = U32();
        if (length > (uint)maxLength)
            throw new DeviceStateException($"{_kind} state: a block of {length} bytes where at most {maxLength} fit");
        return Take((int)length);
    }

    /// <summary>Refuses a value outside what the device can hold.</summary>
    public readonly void Check(bool valid, string what)
    {
        if (!valid) throw new DeviceStateException($"{_kind} state: {what}");
    }

    /// <summary>The state must end here.</summary>
    public readonly void End()
    {
        if (_position != _data.Length)
            throw new DeviceStateException($"{_kind} state has {_data.Length - _position} unexpected bytes after offset {_position}");
    }
}

/// <summary>
/// One device's state as a self-checking record: magic "CSDS", the kind (length-prefixed ASCII), the version, the
/// length of the state, the state, and a CRC-32C over everything before it. The unit a snapshot stores per device.
/// </summary>
public static class DeviceStateRecord
{
    private const uint Magic = 0x53445343; // "CSDS" little-endian
    private const int MaxKindLength = 64;

    /// <summary>The largest state a device may save (a snapshot of a huge state is a bug, and a huge length in a file is hostile).</summary>
    public const int MaxStateLength = 1 << 20;

    /// <summary>Saves <paramref name="device"/>'s state as a record.</summary>
    public static byte[] Save(IStatefulDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var state = new StateWriter();
        device.SaveState(state);
        if (state.Written.Length > MaxStateLength)
            throw new InvalidOperationException($"{device.StateKind} saved {state.Written.Length} bytes, more than {MaxStateLength}");
        byte[] kind = Encoding.ASCII.GetBytes(device.StateKind);
        var record = new StateWriter();
        record.U32(Magic);
        record.Bytes(kind);
        record.U16(device.StateVersion);
        record.Bytes(state.Written);
        record.U32(Crc32C(record.Written));
        return record.Written.ToArray();
    }

    /// <summary>Checks a record (magic, kind, CRC, lengths) and loads it into <paramref name="device"/>; nothing changes when it is refused.</summary>
    /// <exception cref="DeviceStateException">The record is not a valid state for this device.</exception>
    public static void Load(IStatefulDevice device, ReadOnlySpan<byte> record)
    {
        ArgumentNullException.ThrowIfNull(device);
        var r = new StateReader(record, device.StateKind);
        r.Check(r.U32() == Magic, "not a csvmm device state record (bad magic)");
        string kind = Encoding.ASCII.GetString(r.Bytes(MaxKindLength));
        r.Check(kind == device.StateKind, $"the record holds a '{kind}' state");
        ushort version = r.U16();
        r.Check(version != 0 && version <= device.StateVersion, $"version {version} is not one this csvmm reads (1 to {device.StateVersion})");
        ReadOnlySpan<byte> state = r.Bytes(MaxStateLength);
        int covered = record.Length - 4;
        uint crc = r.U32();
        r.End();
        r.Check(crc == Crc32C(record[..covered]), "checksum mismatch (the record is corrupted)");
        device.LoadState(state, version);
    }

    /// <summary>CRC-32C of <paramref name="data"/> (<see cref="State.Crc32C"/>).</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data) => State.Crc32C.Compute(data);
}
