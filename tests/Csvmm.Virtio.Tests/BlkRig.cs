using System.Buffers.Binary;
using System.Diagnostics;
using Csvmm.Block;
using Csvmm.Devices;
using Csvmm.Devices.Pci;
using Csvmm.Memory;
using static Csvmm.Virtio.Virtq;

namespace Csvmm.Virtio.Tests;

/// <summary>An interrupt line that records every Set call.</summary>
internal sealed class FakeIrqLine : IIrqLine
{
    private readonly Lock _lock = new();
    private readonly List<bool> _calls = [];

    public bool Level { get { lock (_lock) return _calls.Count > 0 && _calls[^1]; } }
    public int Raises { get { lock (_lock) return _calls.Count(c => c); } }
    public int Count { get { lock (_lock) return _calls.Count; } }

    public void Set(bool level)
    {
        lock (_lock) _calls.Add(level);
    }
}

/// <summary>Records MSI routes and triggers.</summary>
internal sealed class RecordingMsi(int count) : IMsiVectors
{
    private readonly Lock _lock = new();
    private readonly List<int> _triggers = [];
    public Dictionary<int, MsiMessage?> Routes { get; } = [];
    public int Count => count;

    public int[] Triggers { get { lock (_lock) return [.. _triggers]; } }

    public void SetRoute(int vector, MsiMessage? message)
    {
        lock (_lock) Routes[vector] = message;
    }

    public void Trigger(int vector)
    {
        lock (_lock) _triggers.Add(vector);
    }
}

/// <summary>A scratch image in /var/tmp (a real file system, so O_DIRECT works where the host has it).</summary>
internal sealed class ScratchImage : IDisposable
{
    public ScratchImage(int size)
    {
        string root = Directory.Exists("/var/tmp") ? "/var/tmp" : System.IO.Path.GetTempPath();
        Path = System.IO.Path.Combine(root, $"csvmm-virtio-{Guid.NewGuid():N}.img");
        Initial = Pattern(0, size);
        File.WriteAllBytes(Path, Initial);
    }

    public string Path { get; }
    public byte[] Initial { get; }
    public byte[] Contents => File.ReadAllBytes(Path);

    /// <summary>Deterministic, position-dependent bytes (so a misplaced transfer shows up).</summary>
    public static byte[] Pattern(long start, int length)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++)
        {
            long x = start + i;
            b[i] = (byte)(x * 131 + (x >> 9) * 7 + 1);
        }
        return b;
    }

    public void Dispose()
    {
        try { File.Delete(Path); }
        catch (IOException) { }
    }
}

/// <summary>One buffer of a request as the driver lays it out.</summary>
internal readonly record struct Buf(ulong Address, uint Length, bool Writable);

/// <summary>
/// A virtio-blk device behind the PCI transport over fake guest RAM and a scratch image, with a minimal driver:
/// it finds the structures through the capability list, negotiates, sets up queue 0 and submits requests by
/// writing descriptors and the notification register, then waits for the used ring.
/// </summary>
internal sealed class BlkRig : IDisposable
{
    public const ulong RamSize = 8 << 20;
    public static readonly GuestAddress Rom = new(0x100_0000);
    public const ulong Desc = 0x1000, Avail = 0x2000, Used = 0x3000, IndirectBase = 0x8000;
    public const ulong DataStart = 0x2_0000;

    private readonly ScratchImage _image;
    private ulong _nextData = DataStart;
    private ushort _availIdx, _usedSeen, _nextDesc;

    public BlkRig(int diskSize = 1 << 20, bool readOnly = false, bool msix = true, VirtioBlkOptions? options = null,
        DiskCacheMode cache = DiskCacheMode.Writeback, Func<IDiskBackend, IDiskBackend>? wrap = null)
    {
        Memory.AddRegion(GuestAddress.Zero, RamSize, "ram");
        Memory.AddRegion(Rom, 0x1_0000, "rom", readOnly: true);
        _image = new ScratchImage(diskSize);
        Disk = DiskOpener.Open(new DiskOpenOptions(_image.Path, readOnly, cache));
        Blk = new VirtioBlk(wrap is null ? Disk : wrap(Disk), options ?? new VirtioBlkOptions { Serial = "csvmm-test-serial" });
        Msi = msix ? new RecordingMsi(VirtioPciDevice.MsixVectorsFor(Blk)) : null;
        Pci = new VirtioPciDevice(Blk, Memory, Intx, Msi);
        Bar = Pci.GetBarDevice(0)!;
        FindCapabilities();
    }

    public GuestMemory Memory { get; } = new();
    public RawDisk Disk { get; }
    public VirtioBlk Blk { get; }
    public VirtioPciDevice Pci { get; }
    public FakeIrqLine Intx { get; } = new();
    public RecordingMsi? Msi { get; }
    public IBusDevice Bar { get; }
    public byte[] Initial => _image.Initial;
    public byte[] FileContents => _image.Contents;
    public ushort QueueSize { get; private set; } = 256;

    // Where the capabilities say the structures are.
    public uint Common, Isr, DeviceCfg, Notify, NotifyMultiplier, DeviceCfgLength;

    public void FindCapabilities()
    {
        int cap = Pci.Config.ReadByte(PciConfigSpace.CapabilitiesPointerOffset);
        int guard = 0;
        while (cap != 0 && guard++ < 48)
        {
            byte id = Pci.Config.ReadByte(cap);
            if (id == VirtioPciDevice.VendorCapabilityId)
            {
                byte type = Pci.Config.ReadByte(cap + 3);
                Assert.Equal(0, Pci.Config.ReadByte(cap + 4)); // BAR 0
                uint offset = Pci.Config.ReadDword(cap + 8), length = Pci.Config.ReadDword(cap + 12);
                switch (type)
                {
                    case VirtioPciDevice.CfgCommon: Common = offset; break;
                    case VirtioPciDevice.CfgIsr: Isr = offset; break;
                    case VirtioPciDevice.CfgDevice: DeviceCfg = offset; DeviceCfgLength = length; break;
                    case VirtioPciDevice.CfgNotify:
                        Notify = offset;
                        NotifyMultiplier = Pci.Config.ReadDword(cap + 16);
                        break;
                }
            }
            cap = Pci.Config.ReadByte(cap + 1);
        }
    }

    // ---- register access ------------------------------------------------------------------------------

    public ulong Read(ulong offset, int width)
    {
        Span<byte> b = stackalloc byte[width];
        b.Fill(0xCC);
        Bar.Read(offset, b);
        return BusData.Get(b);
    }

    public void Write(ulong offset, int width, ulong value)
    {
        Span<byte> b = stackalloc byte[width];
        BusData.Set(b, value);
        Bar.Write(offset, b);
    }

    public ulong Common64(int field) => Read(Common + (uint)field, 8);
    public uint C32(int field) => (uint)Read(Common + (uint)field, 4);
    public ushort C16(int field) => (ushort)Read(Common + (uint)field, 2);
    public byte C8(int field) => (byte)Read(Common + (uint)field, 1);
    public void C32(int field, uint v) => Write(Common + (uint)field, 4, v);
    public void C16(int field, ushort v) => Write(Common + (uint)field, 2, v);
    public void C8(int field, byte v) => Write(Common + (uint)field, 1, v);

    public byte Status { get => C8(0x14); set => C8(0x14, value); }

    public ulong DeviceFeatures()
    {
        C32(0x00, 0);
        ulong lo = C32(0x04);
        C32(0x00, 1);
        return lo | ((ulong)C32(0x04) << 32);
    }

    public void WriteDriverFeatures(ulong features)
    {
        C32(0x08, 0);
        C32(0x0C, (uint)features);
        C32(0x08, 1);
        C32(0x0C, (uint)(features >> 32));
    }

    public byte ReadIsr() => (byte)Read(Isr, 1);

    /// <summary>Enables MSI-X in the configuration space and programs and unmasks every vector.</summary>
    public void EnableMsix()
    {
        var table = Pci.Msix!;
        for (int v = 0; v < table.Count; v++)
        {
            Write(VirtioPciDevice.MsixTableOffset + 16 * (uint)v, 4, 0xFEE0_0000);
            Write(VirtioPciDevice.MsixTableOffset + 16 * (uint)v + 8, 4, 0x30u + (uint)v);
            Write(VirtioPciDevice.MsixTableOffset + 16 * (uint)v + 12, 4, 0);
        }
        int control = table.CapabilityOffset + 2;
        Pci.WriteConfig(control, [0x00, 0x80]);
    }

    /// <summary>The driver's initialisation sequence (virtio 1.2 §3.1.1). Returns the status read back.</summary>
    public byte Init(ulong? features = null, ushort queueSize = 256, bool msixVectors = false)
    {
        Status = 0;
        Status = VirtioStatus.Acknowledge;
        Status = VirtioStatus.Acknowledge | VirtioStatus.Driver;
        WriteDriverFeatures(features ?? DeviceFeatures());
        Status = VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk;
        byte s = Status;
        if ((s & VirtioStatus.FeaturesOk) == 0) return s;
        if (msixVectors) C16(0x10, 0);
        SetUpQueue(queueSize, msixVectors ? (ushort)1 : VirtioPciDevice.NoVector);
        Status = VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk | VirtioStatus.DriverOk;
        return Status;
    }

    public void SetUpQueue(ushort size, ushort vector, ulong desc = Desc, ulong avail = Avail, ulong used = Used)
    {
        Mem(Desc, (int)(DataStart - Desc)).Clear(); // fresh rings, as a driver allocates them
        C16(0x16, 0);
        C16(0x18, size);
        QueueSize = C16(0x18);
        C16(0x1A, vector);
        C32(0x20, (uint)desc);
        C32(0x24, (uint)(desc >> 32));
        C32(0x28, (uint)avail);
        C32(0x2C, (uint)(avail >> 32));
        Write(Common + 0x30, 8, used);
        C16(0x1C, 1);
        _availIdx = _usedSeen = _nextDesc = 0;
    }

    // ---- guest memory ---------------------------------------------------------------------------------

    public ulong Alloc(int bytes, int align = 16)
    {
        ulong a = (_nextData + (ulong)(align - 1)) & ~(ulong)(align - 1);
        _nextData = a + (ulong)bytes;
        if (_nextData > RamSize) throw new InvalidOperationException("rig RAM exhausted");
        return a;
    }

    public Span<byte> Mem(ulong address, int length) => Memory.GetSpan(new GuestAddress(address), length);

    public ulong Header(uint type, ulong sector)
    {
        ulong a = Alloc(16);
        var h = Mem(a, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(h, type);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], sector);
        return a;
    }

    public ulong StatusByte()
    {
        ulong a = Alloc(1, 1);
        Mem(a, 1)[0] = 0xEE;
        return a;
    }

    public void WriteDesc(ulong table, int index, ulong addr, uint len, ushort flags, ushort next)
    {
        var raw = Mem(table + (ulong)(16 * index), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(raw, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[14..], next);
    }

    /// <summary>Writes <paramref name="bufs"/> as a chain in the descriptor table; returns the head.</summary>
    public ushort Chain(params Buf[] bufs)
    {
        ushort head = _nextDesc;
        for (int i = 0; i < bufs.Length; i++)
        {
            int index = (head + i) % QueueSize;
            bool more = i + 1 < bufs.Length;
            WriteDesc(Desc, index, bufs[i].Address, bufs[i].Length,
                (ushort)((bufs[i].Writable ? DescFlagWrite : 0) | (more ? DescFlagNext : 0)), (ushort)((index + 1) % QueueSize));
        }
        _nextDesc = (ushort)((head + bufs.Length) % QueueSize);
        return head;
    }

    /// <summary>Writes <paramref name="bufs"/> as an indirect table; returns the head of the one-descriptor chain.</summary>
    public ushort IndirectChain(params Buf[] bufs)
    {
        ulong table = Alloc(16 * bufs.Length, 16);
        for (int i = 0; i < bufs.Length; i++)
            WriteDesc(table, i, bufs[i].Address, bufs[i].Length,
                (ushort)((bufs[i].Writable ? DescFlagWrite : 0) | (i + 1 < bufs.Length ? DescFlagNext : 0)), (ushort)(i + 1));
        ushort head = _nextDesc;
        WriteDesc(Desc, head, table, (uint)(16 * bufs.Length), DescFlagIndirect, 0);
        _nextDesc = (ushort)((head + 1) % QueueSize);
        return head;
    }

    /// <summary>Publishes <paramref name="head"/> in the available ring (and asks for an interrupt on it).</summary>
    public void Publish(ushort head, bool askForInterrupt = true)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(Mem(Avail + 4 + 2 * (ulong)(_availIdx % QueueSize), 2), head);
        _availIdx++;
        // used_event: interrupt me once the device has used everything published so far (what Linux does).
        if (askForInterrupt) SetUsedEvent((ushort)(_availIdx - 1));
        Interlocked.MemoryBarrier();
        BinaryPrimitives.WriteUInt16LittleEndian(Mem(Avail + 2, 2), _availIdx);
    }

    public void SetUsedEvent(ushort value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(Mem(Avail + 4 + 2 * (ulong)QueueSize, 2), value);

    public ushort AvailEvent => BinaryPrimitives.ReadUInt16LittleEndian(Mem(Used + 4 + 8 * (ulong)QueueSize, 2));

    public void Kick() => Write(Notify, 2, 0);

    public ushort UsedIdx => BinaryPrimitives.ReadUInt16LittleEndian(Mem(Used + 2, 2));

    /// <summary>Waits until the device has used <paramref name="count"/> more chains; returns their (id, len).</summary>
    public (uint Id, uint Len)[] WaitUsed(int count = 1, int timeoutMs = 10_000)
    {
        var sw = Stopwatch.StartNew();
        while ((ushort)(UsedIdx - _usedSeen) < count)
        {
            if (sw.ElapsedMilliseconds > timeoutMs)
                throw new TimeoutException($"used.idx stayed at {UsedIdx}, expected {_usedSeen + count}");
            Thread.Sleep(1);
        }
        var result = new (uint, uint)[count];
        for (int i = 0; i < count; i++)
        {
            var e = Mem(Used + 4 + 8 * (ulong)((_usedSeen + i) % QueueSize), 8);
            result[i] = (BinaryPrimitives.ReadUInt32LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[4..]));
        }
        _usedSeen += (ushort)count;
        return result;
    }

    /// <summary>Submits one chain, kicks, waits; returns the used length.</summary>
    public uint Submit(params Buf[] bufs)
    {
        ushort head = Chain(bufs);
        Publish(head);
        Kick();
        var (id, len) = WaitUsed()[0];
        Assert.Equal(head, id);
        return len;
    }

    /// <summary>A read of <paramref name="sectors"/> sectors split into <paramref name="segments"/> data buffers.</summary>
    public (byte Status, byte[] Data, uint Used) ReadSectors(ulong sector, int sectors, int segments = 1, bool indirect = false)
    {
        int bytes = sectors * 512;
        var bufs = new List<Buf> { new(Header(VirtioBlkConstants.TypeIn, sector), 16, false) };
        var data = new List<(ulong, int)>();
        int per = bytes / segments;
        for (int i = 0; i < segments; i++)
        {
            int len = i == segments - 1 ? bytes - per * (segments - 1) : per;
            ulong a = Alloc(len, 8);
            Mem(a, len).Fill(0xAB);
            bufs.Add(new Buf(a, (uint)len, true));
            data.Add((a, len));
        }
        ulong status = StatusByte();
        bufs.Add(new Buf(status, 1, true));
        uint used;
        if (indirect)
        {
            ushort head = IndirectChain([.. bufs]);
            Publish(head);
            Kick();
            used = WaitUsed()[0].Len;
        }
        else used = Submit([.. bufs]);
        var result = new byte[bytes];
        int at = 0;
        foreach (var (a, len) in data)
        {
            Mem(a, len).CopyTo(result.AsSpan(at));
            at += len;
        }
        return (Mem(status, 1)[0], result, used);
    }

    public (byte Status, uint Used) WriteSectors(ulong sector, byte[] data, int segments = 1)
    {
        var bufs = new List<Buf> { new(Header(VirtioBlkConstants.TypeOut, sector), 16, false) };
        int per = data.Length / segments, at = 0;
        for (int i = 0; i < segments; i++)
        {
            int len = i == segments - 1 ? data.Length - per * (segments - 1) : per;
            ulong a = Alloc(len, 8);
            data.AsSpan(at, len).CopyTo(Mem(a, len));
            bufs.Add(new Buf(a, (uint)len, false));
            at += len;
        }
        ulong status = StatusByte();
        bufs.Add(new Buf(status, 1, true));
        uint used = Submit([.. bufs]);
        return (Mem(status, 1)[0], used);
    }

    /// <summary>A request with just a header and a status byte (FLUSH, or a bad type).</summary>
    public (byte Status, uint Used) Simple(uint type, ulong sector = 0)
    {
        ulong status = StatusByte();
        uint used = Submit(new Buf(Header(type, sector), 16, false), new Buf(status, 1, true));
        return (Mem(status, 1)[0], used);
    }

    /// <summary>DISCARD or WRITE_ZEROES with the given ranges.</summary>
    public (byte Status, uint Used) Ranges(uint type, params (ulong Sector, uint Sectors, uint Flags)[] ranges)
    {
        ulong payload = Alloc(16 * Math.Max(ranges.Length, 1));
        for (int i = 0; i < ranges.Length; i++)
        {
            var r = Mem(payload + 16 * (ulong)i, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(r, ranges[i].Sector);
            BinaryPrimitives.WriteUInt32LittleEndian(r[8..], ranges[i].Sectors);
            BinaryPrimitives.WriteUInt32LittleEndian(r[12..], ranges[i].Flags);
        }
        ulong status = StatusByte();
        uint used = Submit(new Buf(Header(type, 0), 16, false), new Buf(payload, (uint)(16 * ranges.Length), false), new Buf(status, 1, true));
        return (Mem(status, 1)[0], used);
    }

    /// <summary>
    /// Makes this rig's guest the one <paramref name="source"/> had: its RAM and the driver's place in the rings (what
    /// a restored machine's guest is). Device state is not copied: load it separately.
    /// </summary>
    public void AdoptGuest(BlkRig source)
    {
        source.Mem(0, (int)RamSize).CopyTo(Mem(0, (int)RamSize));
        _availIdx = source._availIdx;
        _usedSeen = source._usedSeen;
        _nextDesc = source._nextDesc;
        _nextData = source._nextData;
        QueueSize = source.QueueSize;
    }

    public void Dispose()
    {
        Pci.Dispose();
        Disk.Dispose();
        Memory.Dispose();
        _image.Dispose();
    }
}
