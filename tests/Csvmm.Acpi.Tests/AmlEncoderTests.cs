using Csvmm.Acpi;
using Csvmm.Acpi.Aml;

namespace Csvmm.Acpi.Tests;

public sealed class AmlEncoderTests
{
    private static byte[] Encode(IAmlObject o)
    {
        var w = new AmlWriter();
        o.WriteTo(w);
        return w.ToArray();
    }

    private static byte[] Encode(IAmlResource r)
    {
        var w = new AmlWriter();
        r.WriteTo(w);
        return w.ToArray();
    }

    private static byte[] PkgLength(int payload)
    {
        var w = new AmlWriter();
        w.WritePkgLength(payload);
        return w.ToArray();
    }

    // The encoded value counts its own bytes: 1 byte holds totals up to 63, 2 bytes up to 4095, 3 up to 2^20 - 1.
    [Theory]
    [InlineData(0, new byte[] { 0x01 })]
    [InlineData(62, new byte[] { 0x3F })]                    // total 63: the largest 1-byte form
    [InlineData(63, new byte[] { 0x41, 0x04 })]              // total 65 = 0x041
    [InlineData(64, new byte[] { 0x42, 0x04 })]              // total 66
    [InlineData(4093, new byte[] { 0x4F, 0xFF })]            // total 4095 = 0xFFF: the largest 2-byte form
    [InlineData(4094, new byte[] { 0x81, 0x00, 0x01 })]      // total 4097 = 0x1001
    [InlineData(4095, new byte[] { 0x82, 0x00, 0x01 })]      // total 4098
    [InlineData(4096, new byte[] { 0x83, 0x00, 0x01 })]      // total 4099
    [InlineData(0xFFFFC, new byte[] { 0x8F, 0xFF, 0xFF })]   // total 0xFFFFF: the largest 3-byte form
    [InlineData(0xFFFFD, new byte[] { 0xC1, 0x00, 0x00, 0x01 })] // total 0x100001
    [InlineData(0xFFFFFFB, new byte[] { 0xCF, 0xFF, 0xFF, 0xFF })] // total 2^28 - 1: the largest PkgLength
    public void PkgLength_uses_the_shortest_form_and_counts_itself(int payload, byte[] expected)
    {
        var encoded = PkgLength(payload);
        Assert.Equal(expected, encoded);
        int pos = 0;
        Assert.Equal(payload + encoded.Length, AmlDecoder.PkgLength(encoded, ref pos));
        Assert.Equal(encoded.Length, pos);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(0xFFFFFFC)]
    public void PkgLength_out_of_range_throws(int payload) =>
        Assert.Throws<AcpiException>(() => PkgLength(payload));

    [Theory]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(4095)]
    [InlineData(4096)]
    public void Buffer_around_PkgLength_boundaries_decodes_back(int size)
    {
        var data = Enumerable.Range(0, size).Select(i => (byte)i).ToArray();
        var aml = Encode(new AmlBuffer(data));
        Assert.Equal(0x11, aml[0]);
        int pos = 0;
        Assert.Equal(data, AmlDecoder.Data(aml, ref pos));
        Assert.Equal(aml.Length, pos);
    }

    [Theory]
    [InlineData(0UL, new byte[] { 0x00 })]
    [InlineData(1UL, new byte[] { 0x01 })]
    [InlineData(2UL, new byte[] { 0x0A, 0x02 })]
    [InlineData(0xFFUL, new byte[] { 0x0A, 0xFF })]
    [InlineData(0x100UL, new byte[] { 0x0B, 0x00, 0x01 })]
    [InlineData(0xFFFFUL, new byte[] { 0x0B, 0xFF, 0xFF })]
    [InlineData(0x1_0000UL, new byte[] { 0x0C, 0x00, 0x00, 0x01, 0x00 })]
    [InlineData(0xFFFF_FFFFUL, new byte[] { 0x0C, 0xFF, 0xFF, 0xFF, 0xFF })]
    [InlineData(0x1_0000_0000UL, new byte[] { 0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 })]
    [InlineData(0x0123_4567_89AB_CDEFUL, new byte[] { 0x0E, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01 })]
    public void Integers_use_the_shortest_encoding(ulong value, byte[] expected) =>
        Assert.Equal(expected, Encode(new AmlInteger(value)));

    [Theory]
    [InlineData("_HID", new byte[] { 0x5F, 0x48, 0x49, 0x44 })]
    [InlineData("PCI", new byte[] { 0x50, 0x43, 0x49, 0x5F })]                     // padded with '_'
    [InlineData(@"\_S5", new byte[] { 0x5C, 0x5F, 0x53, 0x35, 0x5F })]
    [InlineData(@"\", new byte[] { 0x5C, 0x00 })]                                  // root alone: NullName
    [InlineData(@"\_SB.PCI0", new byte[] { 0x5C, 0x2E, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30 })]
    [InlineData("^COM1", new byte[] { 0x5E, 0x43, 0x4F, 0x4D, 0x31 })]
    [InlineData("^^_SB.PCI0", new byte[] { 0x5E, 0x5E, 0x2E, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30 })]
    [InlineData(@"\_SB.PCI0.ISA", new byte[]
        { 0x5C, 0x2F, 0x03, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30, 0x49, 0x53, 0x41, 0x5F })]
    public void Name_strings_encode_prefixes_and_segments(string path, byte[] expected) =>
        Assert.Equal(expected, Encode(AmlNameString.Parse(path)));

    [Theory]
    [InlineData("")]
    [InlineData("^")]
    [InlineData("TOOLONG")]
    [InlineData("1ABC")]
    [InlineData("pci0")]
    [InlineData(@"\_SB..PCI0")]
    [InlineData(@"\_SB.")]
    [InlineData(@"^\_SB")]
    [InlineData("A-B")]
    public void Invalid_name_strings_throw(string path) =>
        Assert.Throws<AcpiException>(() => AmlNameString.Parse(path));

    [Fact]
    public void EisaId_compresses_pnp_ids()
    {
        Assert.Equal(0x030AD041u, AmlEisaId.Compress("PNP0A03"));
        Assert.Equal(0x0105D041u, AmlEisaId.Compress("PNP0501"));
        Assert.Equal(new byte[] { 0x0C, 0x41, 0xD0, 0x0A, 0x03 }, Encode(new AmlEisaId("PNP0A03")));
    }

    [Theory]
    [InlineData("PNP0A0")]
    [InlineData("pnp0A03")]
    [InlineData("PNP0A0G")]
    [InlineData("PNP0a03")]
    [InlineData("P@P0A03")]
    public void Invalid_eisa_ids_throw(string id) => Assert.Throws<AcpiException>(() => AmlEisaId.Compress(id));

    [Fact]
    public void String_is_prefixed_and_nul_terminated()
    {
        Assert.Equal(new byte[] { 0x0D, 0x61, 0x42, 0x00 }, Encode(new AmlString("aB")));
        Assert.Throws<AcpiException>(() => new AmlString("a\0b"));
        Assert.Throws<AcpiException>(() => new AmlString("é"));
    }

    [Fact]
    public void Package_holds_count_and_elements()
    {
        // PackageOp, PkgLength 5 (itself + count + 3 bytes of elements), 2 elements: One, 0x0A 0x02
        Assert.Equal(new byte[] { 0x12, 0x05, 0x02, 0x01, 0x0A, 0x02 },
            Encode(new AmlPackage(AmlInteger.One, new AmlInteger(2))));
        Assert.Equal(new byte[] { 0x12, 0x02, 0x00 }, Encode(new AmlPackage()));
    }

    [Fact]
    public void Package_of_more_than_255_elements_is_a_var_package()
    {
        var aml = Encode(new AmlPackage(Enumerable.Range(0, 300).Select(i => (IAmlObject)new AmlInteger((ulong)i))));
        Assert.Equal(0x13, aml[0]);
        int pos = 0;
        var elements = Assert.IsType<List<object>>(AmlDecoder.Data(aml, ref pos));
        Assert.Equal(Enumerable.Range(0, 300).Select(i => (object)(ulong)i), elements);
        Assert.Equal(aml.Length, pos);
    }

    [Fact]
    public void Buffer_holds_size_and_bytes() =>
        Assert.Equal(new byte[] { 0x11, 0x06, 0x0A, 0x03, 0xAA, 0xBB, 0xCC }, Encode(new AmlBuffer([0xAA, 0xBB, 0xCC])));

    [Fact]
    public void Name_declares_a_value() =>
        Assert.Equal(new byte[] { 0x08, 0x5F, 0x55, 0x49, 0x44, 0x00 }, Encode(new AmlName("_UID", AmlInteger.Zero)));

    [Fact]
    public void Method_with_return()
    {
        // Method (_STA, 0, NotSerialized) { Return (0x0F) }
        Assert.Equal(new byte[] { 0x14, 0x09, 0x5F, 0x53, 0x54, 0x41, 0x00, 0xA4, 0x0A, 0x0F },
            Encode(new AmlMethod("_STA", 0, false, new AmlReturn(new AmlInteger(0x0F)))));
        // Method (FOO, 2, Serialized) { Return (One) }: flags = 2 args | serialized
        Assert.Equal(new byte[] { 0x14, 0x08, 0x46, 0x4F, 0x4F, 0x5F, 0x0A, 0xA4, 0x01 },
            Encode(new AmlMethod("FOO", 2, true, new AmlReturn(AmlInteger.One))));
        Assert.Throws<AcpiException>(() => new AmlMethod("FOO", 8, false));
    }

    [Fact]
    public void Device_and_scope_wrap_their_terms()
    {
        Assert.Equal(new byte[] { 0x5B, 0x82, 0x05, 0x43, 0x4F, 0x4D, 0x31 }, Encode(new AmlDevice("COM1")));
        var scope = Encode(new AmlScope(@"\_SB", new AmlDevice("COM1", new AmlName("_UID", AmlInteger.One))));
        Assert.Equal(new byte[]
        {
            0x10, 0x13, 0x5C, 0x5F, 0x53, 0x42, 0x5F,                     // Scope (\_SB), PkgLength 19 = 1 + 5 + 13
            0x5B, 0x82, 0x0B, 0x43, 0x4F, 0x4D, 0x31,                     // Device (COM1), PkgLength 11 = 1 + 4 + 6
            0x08, 0x5F, 0x55, 0x49, 0x44, 0x01,                           // Name (_UID, One)
        }, scope);
    }

    [Fact]
    public void Large_device_gets_a_multi_byte_PkgLength_that_decodes_back()
    {
        var names = Enumerable.Range(0, 100).Select(i => (IAmlObject)new AmlName($"N{i:D3}", new AmlInteger((ulong)i * 1000)));
        var aml = Encode(new AmlDevice("BIG", names));
        var terms = AmlDecoder.TermList(aml);
        var device = Assert.IsType<DecodedScope>(Assert.Single(terms));
        Assert.Equal("BIG_", device.Path);
        Assert.Equal(100, device.Terms.Count);
        Assert.Equal(99_000UL, device.Value("N099"));
    }

    [Fact]
    public void Io_and_irq_descriptors()
    {
        Assert.Equal(new byte[] { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08 }, Encode(new IoDescriptor(0x3F8, 0x3F8, 1, 8)));
        Assert.Equal(new byte[] { 0x22, 0x10, 0x00 }, Encode(new IrqNoFlagsDescriptor(4)));
        Assert.Equal(new byte[] { 0x22, 0x00, 0x82 }, Encode(new IrqNoFlagsDescriptor(9, 15)));
        Assert.Throws<AcpiException>(() => new IrqNoFlagsDescriptor(16));
    }

    [Fact]
    public void Address_space_descriptors()
    {
        Assert.Equal(new byte[] { 0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x01 },
            Encode(new WordBusNumberDescriptor(0, 0xFF)));
        Assert.Equal(new byte[] { 0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x0D, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xF3 },
            Encode(new WordIoDescriptor(0x0D00, 0xFFFF)));
        Assert.Equal(new byte[]
        {
            0x87, 0x17, 0x00, 0x00, 0x0C, 0x01,
            0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0xC0,  0xFF, 0xFF, 0xFF, 0xFD,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x3E,
        }, Encode(new DWordMemoryDescriptor(0xC000_0000, 0xFDFF_FFFF)));
        Assert.Throws<AcpiException>(() => Encode(new WordIoDescriptor(0, 0xFFFF)));          // length 0x10000 does not fit
        Assert.Throws<AcpiException>(() => Encode(new WordIoDescriptor(0x10, 0x0F)));
        Assert.Throws<AcpiException>(() => Encode(new DWordMemoryDescriptor(0, 0xFFFF_FFFF)));
    }

    [Fact]
    public void Resource_template_ends_with_a_checksummed_end_tag()
    {
        var template = new AmlResourceTemplate(new IoDescriptor(0x3F8, 0x3F8, 1, 8), new IrqNoFlagsDescriptor(4));
        var bytes = template.ToBytes();
        Assert.Equal(new byte[] { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79 }, bytes[..^1]);
        Assert.Equal(0, GuestAcpi.Sum(bytes));
        Assert.NotEqual(0, bytes[^1]);

        var aml = Encode(template);
        int pos = 0;
        Assert.Equal(bytes, AmlDecoder.Data(aml, ref pos));
        Assert.Equal(2, AmlDecoder.Resources(bytes).Count);
    }
}
