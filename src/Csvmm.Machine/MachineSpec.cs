using System.Text;
using Csvmm.Devices.State;

namespace Csvmm.Machine;

/// <summary>
/// The data half of a machine: what the user asked for (boot files, disks by path, RAM, vCPUs, reboot policy), with
/// no opened file, handle or callback in it. A snapshot records it so that a restore can rebuild the same machine and
/// refuse a different one; <see cref="MachineConfig"/> adds the host resources (opened disks, the KVM device, test
/// seams) to it. Encoded as a versioned, length-checked record (<see cref="Encode"/>/<see cref="Decode"/>).
/// </summary>
public sealed record MachineSpec
{
    public const string Kind = "machine-spec";
    public const ushort Version = 1;
    /// <summary>Bounds a decoded spec may not exceed (a hostile file cannot make csvmm allocate more).</summary>
    public const int MaxText = 64 * 1024, MaxDisks = 64, MaxCpus = 1024;

    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string Append { get; init; } = "";
    public string? Firmware { get; init; }
    public IReadOnlyList<DiskSpec> Disks { get; init; } = [];
    public ulong MemoryBytes { get; init; } = 512UL << 20;
    public int Cpus { get; init; } = 1;
    public bool NoReboot { get; init; }
    public TimeSpan? Timeout { get; init; }

    /// <summary>Equal specs describe the same machine (disks compared in order, by value).</summary>
    public bool Equals(MachineSpec? other) =>
        other is not null && Kernel == other.Kernel && Initrd == other.Initrd && Append == other.Append &&
        Firmware == other.Firmware && Disks.SequenceEqual(other.Disks) && MemoryBytes == other.MemoryBytes &&
        Cpus == other.Cpus && NoReboot == other.NoReboot && Timeout == other.Timeout;

    public override int GetHashCode() => HashCode.Combine(Kernel, Firmware, MemoryBytes, Cpus, Disks.Count);

    /// <summary>Version 1: the fields in declaration order; texts as UTF-8 blocks behind a presence flag.</summary>
    public byte[] Encode()
    {
        var w = new StateWriter();
        w.U16(Version);
        Text(w, Kernel);
        Text(w, Initrd);
        Text(w, Append);
        Text(w, Firmware);
        w.U16((ushort)Disks.Count);
        foreach (var d in Disks)
        {
            Text(w, d.Path);
            w.U8((byte)d.Interface);
            w.Bool(d.ReadOnly);
            w.U8((byte)d.Cache);
        }
        w.U64(MemoryBytes);
        w.U32((uint)Cpus);
        w.Bool(NoReboot);
        w.Bool(Timeout is not null);
        w.U64(Timeout is { } t ? (ulong)t.Ticks : 0);
        return w.Written.ToArray();
    }

    /// <summary>Reads an encoded spec back; anything truncated, trailing, out of range or of another version is refused.</summary>
    /// <exception cref="DeviceStateException">The bytes are not a spec this csvmm can rebuild.</exception>
    public static MachineSpec Decode(ReadOnlySpan<byte> data)
    {
        var r = new StateReader(data, Kind);
        ushort version = r.U16();
        r.Check(version == Version, $"version {version}");
        string? kernel = Text(ref r), initrd = Text(ref r), append = Text(ref r), firmware = Text(ref r);
        int diskCount = r.U16();
        r.Check(diskCount <= MaxDisks, $"{diskCount} disks");
        var disks = new DiskSpec[diskCount];
        for (int i = 0; i < diskCount; i++)
        {
            string? path = Text(ref r);
            r.Check(!string.IsNullOrEmpty(path), $"disk {i} without a path");
            byte iface = r.U8();
            r.Check(Enum.IsDefined((DiskInterface)iface), $"disk {i}'s interface {iface}");
            bool readOnly = r.Bool();
            byte cache = r.U8();
            r.Check(Enum.IsDefined((DiskCache)cache), $"disk {i}'s cache mode {cache}");
            disks[i] = new DiskSpec(path!, (DiskInterface)iface, readOnly, (DiskCache)cache);
        }
        ulong memory = r.U64();
        r.Check(memory != 0 && (memory & 0xFFF) == 0, $"a RAM size of {memory} bytes");
        uint cpus = r.U32();
        r.Check(cpus is >= 1 and <= MaxCpus, $"{cpus} vCPUs");
        bool noReboot = r.Bool(), hasTimeout = r.Bool();
        ulong ticks = r.U64();
        r.Check(ticks <= (ulong)TimeSpan.MaxValue.Ticks && (hasTimeout || ticks == 0), "the timeout");
        r.End();
        return new MachineSpec
        {
            Kernel = kernel, Initrd = initrd, Append = append ?? "", Firmware = firmware, Disks = disks,
            MemoryBytes = memory, Cpus = (int)cpus, NoReboot = noReboot,
            Timeout = hasTimeout ? TimeSpan.FromTicks((long)ticks) : null,
        };
    }

    private static void Text(StateWriter w, string? value)
    {
        w.Bool(value is not null);
        if (value is not null) w.Bytes(Encoding.UTF8.GetBytes(value));
    }

    private static string? Text(ref StateReader r)
    {
        if (!r.Bool()) return null;
        ReadOnlySpan<byte> bytes = r.Bytes(MaxText);
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (ArgumentException)
        {
            r.Check(false, "a text that is not UTF-8");
            return null;
        }
    }
}
