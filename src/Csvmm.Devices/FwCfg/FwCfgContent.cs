using System.Buffers.Binary;
using System.Text;

namespace Csvmm.Devices.FwCfg;

/// <summary>
/// The items a <see cref="FwCfgDevice"/> serves, fixed before the guest runs (QEMU's fw_cfg, docs/specs/fw_cfg.rst):
/// the signature and interface id, the numbered legacy items firmware still reads, and named files, listed in the
/// file directory (key 0x0019) sorted by name with keys from 0x0020 up, as QEMU assigns them.
/// </summary>
public sealed class FwCfgContent
{
    /// <summary>Key of the "QEMU" signature.</summary>
    public const ushort SignatureKey = 0x0000;
    /// <summary>Key of the interface id (bit 0: the port interface, bit 1: DMA).</summary>
    public const ushort IdKey = 0x0001;
    /// <summary>Key of the file directory.</summary>
    public const ushort FileDirectoryKey = 0x0019;
    /// <summary>Key of the first file.</summary>
    public const ushort FirstFileKey = 0x0020;
    /// <summary>Keys with this bit set are the architecture's own (x86: ACPI tables, SMBIOS, IRQ0 override, E820).</summary>
    public const ushort ArchLocalBit = 0x8000;
    /// <summary>The write-channel bit of a key (writes are refused: no item is writable).</summary>
    public const ushort WriteBit = 0x4000;
    /// <summary>Interface id bits: the traditional port interface and the DMA interface.</summary>
    public const uint IdTraditional = 1, IdDma = 2;

    /// <summary>Longest file name, without its NUL (the directory's name field is 56 bytes).</summary>
    public const int MaxNameLength = 55;
    /// <summary>At most this many files (QEMU serves 32 by default; keys stop at the write bit).</summary>
    public const int MaxFiles = 1024;
    /// <summary>Largest item: firmware reads whole files into its own memory.</summary>
    public const int MaxItemLength = 16 << 20;
    /// <summary>Bytes per file directory entry: size (BE32), select (BE16), reserved (16), name[56].</summary>
    public const int DirectoryEntryLength = 64;

    private readonly Dictionary<ushort, byte[]> _items;
    private readonly (string Name, ushort Key, int Size)[] _files;

    private FwCfgContent(Dictionary<ushort, byte[]> items, (string, ushort, int)[] files)
    {
        _items = items;
        _files = files;
    }

    /// <summary>The files in directory order (by name) with their keys and sizes.</summary>
    public IReadOnlyList<(string Name, ushort Key, int Size)> Files => _files;

    /// <summary>The item under <paramref name="key"/>, or null when there is none.</summary>
    public byte[]? Item(ushort key) => _items.TryGetValue(key, out var v) ? v : null;

    /// <summary>The contents of the file called <paramref name="name"/>, or null.</summary>
    public byte[]? File(string name)
    {
        foreach (var f in _files)
            if (f.Name == name) return _items[f.Key];
        return null;
    }

    /// <summary>Collects items; <see cref="Build"/> freezes them.</summary>
    public sealed class Builder
    {
        private readonly Dictionary<ushort, byte[]> _items = [];
        private readonly SortedDictionary<string, byte[]> _files = new(StringComparer.Ordinal);

        /// <summary>Adds a numbered legacy item (not the signature, id or directory, which the content makes itself).</summary>
        /// <exception cref="ArgumentException">A reserved or file key, a duplicate, or an item too large.</exception>
        public Builder Item(ushort key, ReadOnlySpan<byte> value)
        {
            if (key is SignatureKey or IdKey or FileDirectoryKey)
                throw new ArgumentException($"fw_cfg key 0x{key:x4} is made by the device itself");
            if ((key & WriteBit) != 0 || (key & ~ArchLocalBit) >= FirstFileKey)
                throw new ArgumentException($"fw_cfg key 0x{key:x4} is not a legacy item key");
            if (value.Length > MaxItemLength)
                throw new ArgumentException($"fw_cfg item 0x{key:x4} has {value.Length} bytes, more than {MaxItemLength}");
            if (!_items.TryAdd(key, value.ToArray()))
                throw new ArgumentException($"fw_cfg key 0x{key:x4} is already set");
            return this;
        }

        /// <summary>A little-endian 16-bit legacy item.</summary>
        public Builder Item16(ushort key, ushort value)
        {
            Span<byte> b = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(b, value);
            return Item(key, b);
        }

        /// <summary>A little-endian 64-bit legacy item.</summary>
        public Builder Item64(ushort key, ulong value)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, value);
            return Item(key, b);
        }

        /// <summary>Adds a named file.</summary>
        /// <exception cref="ArgumentException">An empty, non-ASCII or too long name, a duplicate, too many files, or a file too large.</exception>
        public Builder File(string name, ReadOnlySpan<byte> contents)
        {
            ArgumentNullException.ThrowIfNull(name);
            if (name.Length == 0 || name.Length > MaxNameLength || name.Any(c => c is < (char)0x21 or > (char)0x7E))
                throw new ArgumentException($"fw_cfg file name \"{name}\" is not 1-{MaxNameLength} printable ASCII characters");
            if (contents.Length > MaxItemLength)
                throw new ArgumentException($"fw_cfg file {name} has {contents.Length} bytes, more than {MaxItemLength}");
            if (_files.Count == MaxFiles)
                throw new ArgumentException($"more than {MaxFiles} fw_cfg files");
            if (!_files.TryAdd(name, contents.ToArray()))
                throw new ArgumentException($"fw_cfg file {name} is already there");
            return this;
        }

        /// <summary>A file holding a little-endian 16-bit value (as QEMU's etc/sercon-port, etc/boot-cpus).</summary>
        public Builder File16(string name, ushort value)
        {
            Span<byte> b = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(b, value);
            return File(name, b);
        }

        /// <summary>The frozen content, served with or without the DMA interface.</summary>
        public FwCfgContent Build(bool dma = true)
        {
            var items = new Dictionary<ushort, byte[]>(_items)
            {
                [SignatureKey] = "QEMU"u8.ToArray(),
            };
            var id = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(id, IdTraditional | (dma ? IdDma : 0));
            items[IdKey] = id;

            var files = new (string, ushort, int)[_files.Count];
            var dir = new byte[4 + DirectoryEntryLength * _files.Count];
            BinaryPrimitives.WriteUInt32BigEndian(dir, (uint)_files.Count);
            int i = 0;
            foreach (var (name, contents) in _files)
            {
                ushort key = (ushort)(FirstFileKey + i);
                var entry = dir.AsSpan(4 + DirectoryEntryLength * i, DirectoryEntryLength);
                BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)contents.Length);
                BinaryPrimitives.WriteUInt16BigEndian(entry[4..], key);
                Encoding.ASCII.GetBytes(name, entry[8..]);
                items[key] = contents;
                files[i++] = (name, key, contents.Length);
            }
            items[FileDirectoryKey] = dir;
            return new FwCfgContent(items, files);
        }
    }
}
