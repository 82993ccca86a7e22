using System.Numerics;
using Csvmm.Devices.State;

namespace Csvmm.Devices.Pci;

/// <summary>
/// A conventional (256-byte) type-0 PCI configuration space with a per-byte writable mask and a per-byte
/// write-1-to-clear mask, so the guest can change only what the device lets it: vendor, device, class,
/// header type and the like stay put. BARs declared with <see cref="AddMemoryBar"/> / <see cref="AddIoBar"/>
/// answer the sizing protocol by themselves (writing all-ones reads back the size mask with the type bits);
/// <see cref="AddCapability"/> builds the capability list. Building blocks for the host bridge, the ISA bridge
/// and later virtio-pci and IDE functions.
/// </summary>
/// <remarks>
/// Guest accesses (<see cref="Read"/>/<see cref="Write"/>) never throw: bytes outside 0-255 read 0xFF and are not
/// written. Device-side accessors (<c>Set*</c>, <c>Read*</c>, <c>Add*</c>) bypass the masks and throw on bad
/// arguments (they are the device model's bugs). Every method takes one short private lock.
/// </remarks>
public sealed class PciConfigSpace : IStatefulDevice
{
    /// <summary>Size of a conventional configuration space.</summary>
    public const int Size = 256;

    /// <summary>Header offsets (type 0).</summary>
    public const int VendorIdOffset = 0x00, DeviceIdOffset = 0x02, CommandOffset = 0x04, StatusOffset = 0x06,
        RevisionIdOffset = 0x08, ClassCodeOffset = 0x09, CacheLineSizeOffset = 0x0C, LatencyTimerOffset = 0x0D,
        HeaderTypeOffset = 0x0E, Bar0Offset = 0x10, SubsystemVendorIdOffset = 0x2C, SubsystemIdOffset = 0x2E,
        ExpansionRomOffset = 0x30, CapabilitiesPointerOffset = 0x34, InterruptLineOffset = 0x3C,
        InterruptPinOffset = 0x3D;

    /// <summary>Number of BARs in a type-0 header.</summary>
    public const int BarCount = 6;

    /// <summary>Command register bits.</summary>
    public const ushort CommandIoSpace = 0x0001, CommandMemorySpace = 0x0002, CommandBusMaster = 0x0004,
        CommandParityErrorResponse = 0x0040, CommandSerrEnable = 0x0100, CommandInterruptDisable = 0x0400;

    /// <summary>Status register bit: the capability list at 0x34 is valid.</summary>
    public const ushort StatusCapabilitiesList = 0x0010;

    /// <summary>Header-type bit: the device has more than one function.</summary>
    public const byte HeaderTypeMultiFunction = 0x80;

    /// <summary>Where the first capability goes: right after the standard header.</summary>
    public const int FirstCapabilityOffset = 0x40;

    private const ushort WritableCommandBits = CommandIoSpace | CommandMemorySpace | CommandBusMaster
        | CommandParityErrorResponse | CommandSerrEnable | CommandInterruptDisable;
    // Master data parity error, signalled/received target abort, received master abort, signalled SERR, parity error.
    private const ushort StatusErrorBits = 0xF900;

    private readonly Lock _lock = new();
    private readonly byte[] _data = new byte[Size];
    private readonly byte[] _writable = new byte[Size];
    private readonly byte[] _writeOneToClear = new byte[Size];
    private readonly PciBarKind[] _barKinds = new PciBarKind[BarCount];
    private readonly bool[] _barIsUpperHalf = new bool[BarCount];
    private readonly ulong[] _barSizes = new ulong[BarCount];
    private readonly bool[] _barPrefetchable = new bool[BarCount];
    private int _nextCapability = FirstCapabilityOffset;
    private int _lastCapability;

    /// <param name="vendorId">Vendor ID (read-only to the guest).</param>
    /// <param name="deviceId">Device ID (read-only).</param>
    /// <param name="classCode">24-bit class code: base class, sub-class, programming interface (0x060000 = host bridge).</param>
    /// <param name="revision">Revision ID.</param>
    /// <param name="headerType">0, or 0x80 for a multi-function device; other layouts are not modelled.</param>
    /// <param name="subsystemVendorId">Subsystem vendor ID at 0x2C.</param>
    /// <param name="subsystemId">Subsystem ID at 0x2E.</param>
    public PciConfigSpace(ushort vendorId, ushort deviceId, uint classCode, byte revision, byte headerType = 0,
        ushort subsystemVendorId = 0, ushort subsystemId = 0)
    {
        if (classCode > 0xFF_FFFF)
            throw new ArgumentOutOfRangeException(nameof(classCode), classCode, "a PCI class code has 24 bits");
        if ((headerType & ~HeaderTypeMultiFunction) != 0)
            throw new ArgumentOutOfRangeException(nameof(headerType), headerType, "only type-0 headers are modelled");
        if (vendorId == 0xFFFF)
            throw new ArgumentOutOfRangeException(nameof(vendorId), vendorId, "vendor ID 0xFFFF means 'no device'");

        Put(VendorIdOffset, 2, vendorId);
        Put(DeviceIdOffset, 2, deviceId);
        _data[RevisionIdOffset] = revision;
        Put(ClassCodeOffset, 3, classCode);
        _data[HeaderTypeOffset] = headerType;
        Put(SubsystemVendorIdOffset, 2, subsystemVendorId);
        Put(SubsystemIdOffset, 2, subsystemId);

        PutMask(_writable, CommandOffset, 2, WritableCommandBits);
        PutMask(_writeOneToClear, StatusOffset, 2, StatusErrorBits);
        _writable[CacheLineSizeOffset] = 0xFF;
        _writable[InterruptLineOffset] = 0xFF;
    }

    // ---- guest accesses -------------------------------------------------------------------------------

    /// <summary>A guest read: bytes at <paramref name="offset"/>; bytes outside the space read 0xFF.</summary>
    public void Read(int offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                long o = (long)offset + i;
                data[i] = o is >= 0 and < Size ? _data[o] : (byte)0xFF;
            }
        }
    }

    /// <summary>
    /// A guest write: each byte changes only its writable bits, and a 1 in a write-1-to-clear bit clears it.
    /// Bytes outside the space are ignored.
    /// </summary>
    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                long o = (long)offset + i;
                if (o is < 0 or >= Size) continue;
                byte value = data[i];
                byte mask = _writable[o];
                byte stored = (byte)((_data[o] & ~mask) | (value & mask));
                _data[o] = (byte)(stored & ~(value & _writeOneToClear[o]));
            }
        }
    }

    // ---- device-side accessors --------------------------------------------------------------------------

    /// <summary>Reads <paramref name="width"/> (1, 2 or 4) bytes little-endian at <paramref name="offset"/>.</summary>
    public uint ReadValue(int offset, int width)
    {
        CheckRange(offset, width);
        lock (_lock) return Get(offset, width);
    }

    /// <summary>Reads one byte.</summary>
    public byte ReadByte(int offset) => (byte)ReadValue(offset, 1);

    /// <summary>Reads a 16-bit little-endian value.</summary>
    public ushort ReadWord(int offset) => (ushort)ReadValue(offset, 2);

    /// <summary>Reads a 32-bit little-endian value.</summary>
    public uint ReadDword(int offset) => ReadValue(offset, 4);

    /// <summary>Stores a value as the device (ignoring the guest's write masks).</summary>
    public void SetValue(int offset, int width, uint value)
    {
        CheckRange(offset, width);
        lock (_lock) Put(offset, width, value);
    }

    /// <summary>Stores one byte as the device.</summary>
    public void SetByte(int offset, byte value) => SetValue(offset, 1, value);

    /// <summary>Stores a 16-bit value as the device.</summary>
    public void SetWord(int offset, ushort value) => SetValue(offset, 2, value);

    /// <summary>Stores a 32-bit value as the device.</summary>
    public void SetDword(int offset, uint value) => SetValue(offset, 4, value);

    /// <summary>Makes the bits set in <paramref name="mask"/> guest-writable (the others become read-only).</summary>
    public void SetWritableBits(int offset, int width, uint mask)
    {
        CheckRange(offset, width);
        lock (_lock) PutMask(_writable, offset, width, mask);
    }

    /// <summary>Makes the bits set in <paramref name="mask"/> write-1-to-clear for the guest.</summary>
    public void SetWriteOneToClearBits(int offset, int width, uint mask)
    {
        CheckRange(offset, width);
        lock (_lock) PutMask(_writeOneToClear, offset, width, mask);
    }

    /// <summary>The command register.</summary>
    public ushort Command => ReadWord(CommandOffset);

    // ---- BARs -----------------------------------------------------------------------------------------

    /// <summary>
    /// Declares a memory BAR of <paramref name="size"/> bytes (a power of two, at least 16; at most 2 GiB unless
    /// 64-bit). A 64-bit BAR also takes index + 1 for its upper half.
    /// </summary>
    public void AddMemoryBar(int index, ulong size, bool is64Bit = false, bool prefetchable = false)
    {
        ulong max = is64Bit ? 1UL << 63 : 0x8000_0000;
        if (size < 16 || size > max || !BitOperations.IsPow2(size))
            throw new DeviceException($"memory BAR {index}: size 0x{size:x} is not a power of two in [16, 0x{max:x}]");
        lock (_lock)
        {
            ClaimBar(index, is64Bit);
            uint typeBits = (is64Bit ? 0x4u : 0x0u) | (prefetchable ? 0x8u : 0x0u);
            ulong addressMask = ~(size - 1);
            int offset = Bar0Offset + 4 * index;
            Put(offset, 4, typeBits);
            PutMask(_writable, offset, 4, (uint)addressMask & 0xFFFF_FFF0);
            if (is64Bit)
            {
                Put(offset + 4, 4, 0);
                PutMask(_writable, offset + 4, 4, (uint)(addressMask >> 32));
                _barIsUpperHalf[index + 1] = true;
            }
            _barKinds[index] = is64Bit ? PciBarKind.Memory64 : PciBarKind.Memory32;
            _barSizes[index] = size;
            _barPrefetchable[index] = prefetchable;
        }
    }

    /// <summary>Declares an I/O BAR of <paramref name="size"/> ports (a power of two in [4, 256]).</summary>
    public void AddIoBar(int index, uint size)
    {
        if (size < 4 || size > 256 || !BitOperations.IsPow2(size))
            throw new DeviceException($"I/O BAR {index}: size {size} is not a power of two in [4, 256]");
        lock (_lock)
        {
            ClaimBar(index, is64Bit: false);
            int offset = Bar0Offset + 4 * index;
            Put(offset, 4, 0x1); // I/O space indicator
            PutMask(_writable, offset, 4, ~(size - 1) & 0xFFFF_FFFC);
            _barKinds[index] = PciBarKind.Io;
            _barSizes[index] = size;
        }
    }

    /// <summary>The BAR at <paramref name="index"/> (0-5): kind, size and currently programmed address.</summary>
    public PciBar GetBar(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)BarCount, nameof(index));
        lock (_lock)
        {
            int offset = Bar0Offset + 4 * index;
            uint low = Get(offset, 4);
            ulong address = _barKinds[index] switch
            {
                PciBarKind.Memory32 => low & 0xFFFF_FFF0,
                PciBarKind.Memory64 => (low & 0xFFFF_FFF0) | ((ulong)Get(offset + 4, 4) << 32),
                PciBarKind.Io => low & 0xFFFF_FFFC,
                _ => 0,
            };
            return new PciBar(_barKinds[index], _barSizes[index], address, _barPrefetchable[index]);
        }
    }

    private void ClaimBar(int index, bool is64Bit)
    {
        int last = is64Bit ? index + 1 : index;
        if (index < 0 || last >= BarCount)
            throw new DeviceException($"BAR index {index} is out of range for a {(is64Bit ? "64" : "32")}-bit BAR");
        for (int i = index; i <= last; i++)
            if (_barKinds[i] != PciBarKind.None || _barIsUpperHalf[i])
                throw new DeviceException($"BAR {i} is already in use");
    }

    // ---- capabilities ---------------------------------------------------------------------------------

    /// <summary>
    /// Appends a capability with ID <paramref name="id"/> whose bytes after the 2-byte header (ID, next pointer)
    /// are <paramref name="body"/>; links it into the list and sets the status bit. Returns its offset (4-byte
    /// aligned, from 0x40 up). The body is read-only to the guest until <see cref="SetWritableBits"/> says otherwise.
    /// </summary>
    public int AddCapability(byte id, ReadOnlySpan<byte> body)
    {
        lock (_lock)
        {
            int offset = _nextCapability;
            int length = 2 + body.Length;
            if (offset + length > Size)
                throw new DeviceException($"capability 0x{id:x2} ({length} bytes) does not fit in the configuration space");
            _data[offset] = id;
            _data[offset + 1] = 0;
            body.CopyTo(_data.AsSpan(offset + 2));
            if (_lastCapability == 0) _data[CapabilitiesPointerOffset] = (byte)offset;
            else _data[_lastCapability + 1] = (byte)offset;
            _lastCapability = offset;
            _nextCapability = (offset + length + 3) & ~3;
            Put(StatusOffset, 2, Get(StatusOffset, 2) | StatusCapabilitiesList);
            return offset;
        }
    }

    // ---- saved state ------------------------------------------------------------------------------------

    /// <inheritdoc />
    public string StateKind => "pci-config";

    /// <inheritdoc />
    public ushort StateVersion => 1;

    /// <summary>Version 1: the 256 bytes of the space as the guest reads them (BARs, command, capabilities).</summary>
    public void SaveState(StateWriter writer)
    {
        lock (_lock) writer.Bytes(_data);
    }

    /// <summary>
    /// Loads the 256 bytes. The state must be of the same function: every bit the guest cannot write (identity,
    /// class, header type, BAR type and size bits, capability layout) must equal this space's, except in the status
    /// register, whose read-only bits the device itself reports. The owner re-derives what it decodes from the
    /// registers afterwards (the BAR router's Refresh; the MSI-X enable bits).
    /// </summary>
    public void LoadState(ReadOnlySpan<byte> state, ushort version)
    {
        var r = new StateReader(state, StateKind);
        r.Check(version == 1, $"version {version}");
        ReadOnlySpan<byte> saved = r.Bytes(Size);
        r.Check(saved.Length == Size, $"a {saved.Length}-byte configuration space");
        r.End();
        lock (_lock)
        {
            for (int o = 0; o < Size; o++)
            {
                if (o is StatusOffset or StatusOffset + 1) continue;
                int fixedBits = ~(_writable[o] | _writeOneToClear[o]) & 0xFF;
                if (((saved[o] ^ _data[o]) & fixedBits) != 0)
                    throw new DeviceStateException(
                        $"pci-config: byte 0x{o:x2} differs in bits the guest cannot write (0x{saved[o]:x2}, this function has 0x{_data[o]:x2}): a state of another function");
            }
            saved.CopyTo(_data);
        }
    }

    // ---- helpers (callers hold the lock or are the constructor) ---------------------------------------

    private static void CheckRange(int offset, int width)
    {
        if (width is not (1 or 2 or 4))
            throw new ArgumentOutOfRangeException(nameof(width), width, "width must be 1, 2 or 4 bytes");
        if (offset < 0 || offset > Size - width)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"a {width}-byte field must lie within the {Size}-byte space");
    }

    private uint Get(int offset, int width)
    {
        uint value = 0;
        for (int i = 0; i < width; i++) value |= (uint)_data[offset + i] << (8 * i);
        return value;
    }

    private void Put(int offset, int width, uint value)
    {
        for (int i = 0; i < width; i++) _data[offset + i] = (byte)(value >> (8 * i));
    }

    private static void PutMask(byte[] masks, int offset, int width, uint mask)
    {
        for (int i = 0; i < width; i++) masks[offset + i] = (byte)(mask >> (8 * i));
    }
}
