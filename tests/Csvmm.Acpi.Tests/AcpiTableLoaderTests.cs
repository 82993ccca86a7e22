using System.Buffers.Binary;
using System.Text;
using Csvmm.Acpi;
using Csvmm.Memory;

namespace Csvmm.Acpi.Tests;

/// <summary>
/// The linker/loader files checked by executing them as firmware does (QEMU's bios-linker-loader interface, as
/// SeaBIOS's romfile_loader runs it: ALLOCATE copies a file to an aligned address in its zone, ADD_POINTER adds the
/// pointed-to file's address to a little-endian field, ADD_CHECKSUM subtracts the byte sum of a range from a byte),
/// then compared with the tables built directly at the address the "firmware" chose.
/// </summary>
public sealed class AcpiTableLoaderTests
{
    private sealed record Placed(ulong Address, byte[] Data, byte Zone);

    /// <summary>Runs the loader; <paramref name="addressFor"/> picks where each zone's allocation goes.</summary>
    private static Dictionary<string, Placed> Execute(AcpiLoaderFiles files, Func<byte, uint, ulong> addressFor)
    {
        var romfiles = new Dictionary<string, byte[]>
        {
            [AcpiTableLoader.RsdpFile] = files.Rsdp,
            [AcpiTableLoader.TablesFile] = files.Tables,
        };
        var placed = new Dictionary<string, Placed>();
        Assert.Equal(0, files.Loader.Length % AcpiTableLoader.CommandLength);
        for (int at = 0; at < files.Loader.Length; at += AcpiTableLoader.CommandLength)
        {
            var c = files.Loader.AsSpan(at, AcpiTableLoader.CommandLength);
            uint command = BinaryPrimitives.ReadUInt32LittleEndian(c);
            switch (command)
            {
                case AcpiTableLoader.Allocate:
                {
                    string name = Name(c[4..]);
                    uint align = BinaryPrimitives.ReadUInt32LittleEndian(c[60..]);
                    byte zone = c[64];
                    Assert.True(align != 0 && (align & (align - 1)) == 0, $"alignment {align}");
                    ulong address = addressFor(zone, align);
                    Assert.Equal(0UL, address % align);
                    placed.Add(name, new Placed(address, (byte[])romfiles[name].Clone(), zone));
                    break;
                }
                case AcpiTableLoader.AddPointer:
                {
                    var dest = placed[Name(c[4..])];
                    var src = placed[Name(c[60..])];
                    uint offset = BinaryPrimitives.ReadUInt32LittleEndian(c[116..]);
                    byte size = c[120];
                    Assert.Contains(size, new byte[] { 1, 2, 4, 8 });
                    Assert.True(offset + size <= dest.Data.Length, $"pointer at {offset}+{size} past {dest.Data.Length}");
                    Span<byte> field = stackalloc byte[8];
                    dest.Data.AsSpan((int)offset, size).CopyTo(field);
                    ulong value = BinaryPrimitives.ReadUInt64LittleEndian(field) + src.Address;
                    if (size < 8) Assert.True(value >> (8 * size) == 0, "pointer overflows its field");
                    BinaryPrimitives.WriteUInt64LittleEndian(field, value);
                    field[..size].CopyTo(dest.Data.AsSpan((int)offset));
                    break;
                }
                case AcpiTableLoader.AddChecksum:
                {
                    var file = placed[Name(c[4..])];
                    uint offset = BinaryPrimitives.ReadUInt32LittleEndian(c[60..]);
                    uint start = BinaryPrimitives.ReadUInt32LittleEndian(c[64..]);
                    uint length = BinaryPrimitives.ReadUInt32LittleEndian(c[68..]);
                    Assert.True(offset < file.Data.Length && start + length <= file.Data.Length);
                    byte sum = 0;
                    foreach (byte b in file.Data.AsSpan((int)start, (int)length)) sum += b;
                    file.Data[offset] -= sum;
                    break;
                }
                default:
                    Assert.Fail($"unknown loader command {command}");
                    break;
            }
        }
        return placed;
    }

    private static string Name(ReadOnlySpan<byte> field)
    {
        var name = field[..AcpiTableLoader.FileNameLength];
        int nul = name.IndexOf((byte)0);
        Assert.True(nul > 0, "file name not NUL-terminated within 56 bytes");
        return Encoding.ASCII.GetString(name[..nul]);
    }

    [Theory]
    [InlineData(1, 0x0F5A30UL, 0x07FE_0000UL)]
    [InlineData(2, 0x0F0000UL, 0x1FFF_FFC0UL)]
    [InlineData(8, 0x0FFFD0UL, 0xBFF0_0040UL)]
    public void Executed_loader_gives_the_tables_built_at_the_chosen_address(int cpus, ulong rsdpAt, ulong tablesAt)
    {
        var config = AcpiTestPlatform.Config(cpus);
        var files = AcpiTableLoader.Build(config);
        var placed = Execute(files, (zone, _) => zone == AcpiTableLoader.ZoneFSeg ? rsdpAt : tablesAt);

        var rsdp = placed[AcpiTableLoader.RsdpFile];
        var tables = placed[AcpiTableLoader.TablesFile];
        Assert.Equal(AcpiTableLoader.ZoneFSeg, rsdp.Zone);
        Assert.Equal(AcpiTableLoader.ZoneHigh, tables.Zone);

        var direct = AcpiTables.Build(new GuestAddress(tablesAt), AcpiTableLoader.MaxTablesSize, config);
        var expected = direct.Bytes.ToArray();
        Assert.Equal(expected.AsSpan(0, 36).ToArray(), rsdp.Data);
        Assert.Equal(expected.AsSpan(36).ToArray(), tables.Data.AsSpan(36).ToArray());
        Assert.All(tables.Data.AsSpan(0, 36).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Every_pointer_between_tables_is_relocated()
    {
        // Build twice at different addresses: every byte that differs must be covered by an ADD_POINTER or be a
        // checksum the loader fixes, so no absolute address is left unrelocated.
        var config = AcpiTestPlatform.Config(2);
        var files = AcpiTableLoader.Build(config);
        var a = AcpiTables.Build(new GuestAddress(0x10_0000), AcpiTableLoader.MaxTablesSize, config).Bytes.ToArray();
        var b = AcpiTables.Build(new GuestAddress(0x20_0000), AcpiTableLoader.MaxTablesSize, config).Bytes.ToArray();
        var covered = new HashSet<(string, int)>();
        for (int at = 0; at < files.Loader.Length; at += AcpiTableLoader.CommandLength)
        {
            var c = files.Loader.AsSpan(at, AcpiTableLoader.CommandLength);
            uint command = BinaryPrimitives.ReadUInt32LittleEndian(c);
            if (command == AcpiTableLoader.AddPointer)
                for (int i = 0; i < c[120]; i++) covered.Add((Name(c[4..]), (int)BinaryPrimitives.ReadUInt32LittleEndian(c[116..]) + i));
            else if (command == AcpiTableLoader.AddChecksum)
                covered.Add((Name(c[4..]), (int)BinaryPrimitives.ReadUInt32LittleEndian(c[60..])));
        }
        int differing = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] == b[i]) continue;
            differing++;
            var where = i < 36 ? (AcpiTableLoader.RsdpFile, i) : (AcpiTableLoader.TablesFile, i);
            Assert.True(covered.Contains(where), $"byte {i} depends on the tables' address but no loader command touches it");
        }
        Assert.True(differing > 0);
    }

    [Fact]
    public void Loader_allocates_before_it_patches_and_names_only_its_two_files()
    {
        var files = AcpiTableLoader.Build(AcpiTestPlatform.Config(1));
        var allocated = new HashSet<string>();
        for (int at = 0; at < files.Loader.Length; at += AcpiTableLoader.CommandLength)
        {
            var c = files.Loader.AsSpan(at, AcpiTableLoader.CommandLength);
            uint command = BinaryPrimitives.ReadUInt32LittleEndian(c);
            if (command == AcpiTableLoader.Allocate) { allocated.Add(Name(c[4..])); continue; }
            Assert.Contains(Name(c[4..]), allocated);
            if (command == AcpiTableLoader.AddPointer) Assert.Contains(Name(c[60..]), allocated);
        }
        Assert.Equal(new HashSet<string> { AcpiTableLoader.RsdpFile, AcpiTableLoader.TablesFile }, allocated);
        Assert.Equal(36, files.Rsdp.Length);
    }
}
