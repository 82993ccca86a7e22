namespace Csvmm.Devices.Pci;

/// <summary>One BAR that currently decodes: where the guest put it and which device answers.</summary>
/// <param name="Base">Guest-physical address (memory) or port (I/O) of the BAR.</param>
/// <param name="Size">Size in bytes or ports.</param>
/// <param name="IsIo">True for an I/O BAR.</param>
/// <param name="Function">The function owning the BAR.</param>
/// <param name="Bar">BAR index 0-5.</param>
/// <param name="Device">The device behind the BAR.</param>
public readonly record struct MappedBar(ulong Base, ulong Size, bool IsIo, IPciBarFunction Function, int Bar, IBusDevice Device)
{
    /// <summary>Last address (inclusive).</summary>
    public ulong Last => Base + (Size - 1);
}

/// <summary>
/// Decodes guest accesses to PCI BARs. The machine registers <see cref="MmioWindow"/> over the 32-bit PCI MMIO
/// window and <see cref="IoWindow"/> over the PCI I/O window on its frozen buses; both look the address up in an
/// immutable snapshot of the BARs that decode right now (the BAR is enabled by the command register, lies wholly
/// inside the window and is not being sized) and forward the access with the offset from that BAR's base.
/// The snapshot is rebuilt when a configuration write touches a command register or a BAR — rare (firmware and
/// the guest's PCI scan), so that path may allocate; accesses never do. Overlapping BARs (a guest mistake):
/// the function found first on the bus wins.
/// </summary>
public sealed class PciBarRouter
{
    private const int CommandOffset = PciConfigSpace.CommandOffset;
    private const int BarsStart = PciConfigSpace.Bar0Offset, BarsEnd = PciConfigSpace.Bar0Offset + 4 * PciConfigSpace.BarCount;

    private readonly PciBus _bus;
    private readonly ulong _mmioStart, _mmioEnd;
    private readonly ushort _ioStart, _ioEnd;
    private readonly Lock _rebuild = new();
    private volatile MappedBar[] _mapped = [];
    private long _unclaimed;

    /// <param name="bus">The bus whose <see cref="IPciBarFunction"/>s are decoded; the router hooks its <see cref="PciBus.ConfigWritten"/>.</param>
    /// <param name="mmioStart">First address of the MMIO window.</param>
    /// <param name="mmioEnd">End of the MMIO window (exclusive).</param>
    /// <param name="ioStart">First port of the I/O window.</param>
    /// <param name="ioEnd">Last port of the I/O window (inclusive).</param>
    public PciBarRouter(PciBus bus, ulong mmioStart, ulong mmioEnd, ushort ioStart, ushort ioEnd)
    {
        ArgumentNullException.ThrowIfNull(bus);
        if (mmioEnd <= mmioStart) throw new DeviceException($"PCI MMIO window 0x{mmioStart:x}-0x{mmioEnd:x} is empty");
        if (ioEnd < ioStart) throw new DeviceException($"PCI I/O window 0x{ioStart:x}-0x{ioEnd:x} is empty");
        _bus = bus;
        _mmioStart = mmioStart;
        _mmioEnd = mmioEnd;
        _ioStart = ioStart;
        _ioEnd = ioEnd;
        MmioWindow = new Window(this, mmioStart, io: false);
        IoWindow = new Window(this, ioStart, io: true);
        bus.ConfigWritten += OnConfigWritten;
    }

    /// <summary>The device to register over [mmioStart, mmioEnd) on the MMIO bus.</summary>
    public IBusDevice MmioWindow { get; }

    /// <summary>The device to register over [ioStart, ioEnd] on the port bus.</summary>
    public IBusDevice IoWindow { get; }

    /// <summary>Length of the MMIO window.</summary>
    public ulong MmioWindowLength => _mmioEnd - _mmioStart;

    /// <summary>Number of ports in the I/O window.</summary>
    public ushort IoWindowLength => (ushort)(_ioEnd - _ioStart + 1);

    /// <summary>The BARs decoding now.</summary>
    public IReadOnlyList<MappedBar> Mapped => _mapped;

    /// <summary>Accesses inside a window that no BAR claimed (they read all-ones).</summary>
    public long UnclaimedAccesses => Interlocked.Read(ref _unclaimed);

    /// <summary>
    /// Called (on the vCPU thread that reprogrammed a BAR, under the router's rebuild lock) after the snapshot
    /// changed: the machine moves ioeventfds with it.
    /// </summary>
    public event Action<IReadOnlyList<MappedBar>>? Remapped;

    /// <summary>Where BAR <paramref name="bar"/> of <paramref name="function"/> decodes now, if it does.</summary>
    public bool TryGetMapping(IPciBarFunction function, int bar, out MappedBar mapping)
    {
        foreach (var m in _mapped)
        {
            if (ReferenceEquals(m.Function, function) && m.Bar == bar)
            {
                mapping = m;
                return true;
            }
        }
        mapping = default;
        return false;
    }

    /// <summary>
    /// Gives every BAR of every <see cref="IPciBarFunction"/> an address (largest first, naturally aligned, memory
    /// from the start of the MMIO window, I/O from the start of the I/O window) and enables the decodes they need,
    /// as firmware would: a directly booted kernel finds its devices ready, and a guest that reassigns them (SeaBIOS,
    /// a tiny driver) is followed. Call while building the machine. Throws when the windows are too small.
    /// </summary>
    public void AssignAll()
    {
        var pending = new List<(IPciBarFunction F, int Bar, PciBar Info)>();
        foreach (var (_, _, value, _) in _bus.Functions)
        {
            if (value is not IPciBarFunction f) continue;
            for (int i = 0; i < PciConfigSpace.BarCount; i++)
                if (f.Config.GetBar(i) is { Kind: not PciBarKind.None } bar) pending.Add((f, i, bar));
        }
        pending.Sort((a, b) => b.Info.Size.CompareTo(a.Info.Size));
        ulong nextMem = _mmioStart, nextIo = _ioStart;
        foreach (var (f, i, bar) in pending)
        {
            bool io = bar.Kind == PciBarKind.Io;
            ref ulong next = ref io ? ref nextIo : ref nextMem;
            ulong address = (next + (bar.Size - 1)) & ~(bar.Size - 1);
            if (!Inside(address, bar.Size, io))
                throw new DeviceException($"PCI {(io ? "I/O" : "MMIO")} window is too small for BAR {i} (0x{bar.Size:x} bytes)");
            next = address + bar.Size;
            int offset = PciConfigSpace.Bar0Offset + 4 * i;
            uint typeBits = f.Config.ReadDword(offset) & (io ? 0x3u : 0xFu);
            f.Config.SetDword(offset, (uint)address | typeBits);
            if (bar.Kind == PciBarKind.Memory64) f.Config.SetDword(offset + 4, (uint)(address >> 32));
            f.Config.SetWord(PciConfigSpace.CommandOffset, (ushort)(f.Config.Command
                | (io ? PciConfigSpace.CommandIoSpace : PciConfigSpace.CommandMemorySpace)));
        }
        Refresh();
    }

    /// <summary>Rebuilds the snapshot from the functions' current BARs and command registers.</summary>
    public void Refresh()
    {
        lock (_rebuild)
        {
            var list = new List<MappedBar>();
            foreach (var (_, _, value, _) in _bus.Functions)
            {
                if (value is not IPciBarFunction f) continue;
                ushort command = f.Config.Command;
                for (int i = 0; i < PciConfigSpace.BarCount; i++)
                {
                    var bar = f.Config.GetBar(i);
                    if (bar.Kind == PciBarKind.None || f.GetBarDevice(i) is not { } device) continue;
                    bool io = bar.Kind == PciBarKind.Io;
                    if ((command & (io ? PciConfigSpace.CommandIoSpace : PciConfigSpace.CommandMemorySpace)) == 0) continue;
                    if (!Inside(bar.Address, bar.Size, io)) continue; // unassigned, being sized, or outside the window
                    list.Add(new MappedBar(bar.Address, bar.Size, io, f, i, device));
                }
            }
            var next = list.ToArray();
            if (SameAs(next, _mapped)) return;
            _mapped = next;
            Remapped?.Invoke(next);
        }
    }

    private bool Inside(ulong address, ulong size, bool io)
    {
        if (address == 0 || size == 0) return false;
        ulong last = address + (size - 1);
        if (last < address) return false;
        return io ? address >= _ioStart && last <= _ioEnd : address >= _mmioStart && last < _mmioEnd;
    }

    private static bool SameAs(MappedBar[] a, MappedBar[] b)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++)
            if (a[i] != b[i]) return false;
        return true;
    }

    private void OnConfigWritten(IPciFunction function, int offset, int length)
    {
        if (function is not IPciBarFunction) return;
        int end = offset + length;
        bool command = offset < CommandOffset + 2 && end > CommandOffset;
        bool bars = offset < BarsEnd && end > BarsStart;
        if (command || bars) Refresh();
    }

    private bool TryFind(ulong address, bool io, out MappedBar bar)
    {
        var mapped = _mapped;
        for (int i = 0; i < mapped.Length; i++)
        {
            ref readonly var m = ref mapped[i];
            if (m.IsIo == io && address >= m.Base && address <= m.Last)
            {
                bar = m;
                return true;
            }
        }
        bar = default;
        return false;
    }

    private sealed class Window(PciBarRouter router, ulong windowBase, bool io) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            ulong address = windowBase + offset;
            if (router.TryFind(address, io, out var bar))
            {
                bar.Device.Read(address - bar.Base, data);
                return;
            }
            data.Fill(0xFF);
            Interlocked.Increment(ref router._unclaimed);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            ulong address = windowBase + offset;
            if (router.TryFind(address, io, out var bar))
            {
                bar.Device.Write(address - bar.Base, data);
                return;
            }
            Interlocked.Increment(ref router._unclaimed);
        }
    }
}
