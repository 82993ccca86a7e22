using System.Buffers.Binary;
using System.Text;

namespace Csvmm.Acpi.Tests;

/// <summary>A decoded Name(path, value).</summary>
internal sealed record DecodedName(string Path, object Value);

/// <summary>A decoded Scope or Device with its terms.</summary>
internal sealed record DecodedScope(string Kind, string Path, IReadOnlyList<object> Terms)
{
    public object Value(string name) =>
        Terms.OfType<DecodedName>().Single(n => n.Path == name).Value;

    public DecodedScope Child(string path) => Terms.OfType<DecodedScope>().Single(s => s.Path == path);
}

/// <summary>A decoded Method: its flags and raw body.</summary>
internal sealed record DecodedMethod(string Path, byte Flags, byte[] Body);

/// <summary>A name used as a data object (a reference).</summary>
internal sealed record DecodedReference(string Path);

/// <summary>
/// A small AML reader for the subset csvmm emits (ACPI 6.3 chapter 20), written from the grammar independently of
/// the encoder: integers decode to ulong, strings to string, buffers to byte[], packages to List&lt;object&gt;.
/// Anything else fails the test.
/// </summary>
internal static class AmlDecoder
{
    public static List<object> TermList(ReadOnlySpan<byte> aml)
    {
        var terms = new List<object>();
        int pos = 0;
        while (pos < aml.Length) terms.Add(Term(aml, ref pos));
        Assert.Equal(aml.Length, pos);
        return terms;
    }

    /// <summary>Decodes a PkgLength at <paramref name="pos"/>; returns its value and advances past its bytes.</summary>
    public static int PkgLength(ReadOnlySpan<byte> s, ref int pos)
    {
        byte lead = s[pos];
        int follow = lead >> 6;
        int value;
        if (follow == 0)
        {
            value = lead & 0x3F;
        }
        else
        {
            Assert.Equal(0, lead & 0x30); // bits 4-5 reserved in the multi-byte form
            value = lead & 0x0F;
            for (int i = 0; i < follow; i++) value |= s[pos + 1 + i] << (4 + 8 * i);
        }
        pos += 1 + follow;
        return value;
    }

    /// <summary>The span an object with a PkgLength covers, starting at its PkgLength; advances past it.</summary>
    private static ReadOnlySpan<byte> Body(ReadOnlySpan<byte> s, ref int pos)
    {
        int start = pos;
        int length = PkgLength(s, ref pos);
        int end = start + length;
        Assert.InRange(end, pos, s.Length);
        var body = s[pos..end];
        pos = end;
        return body;
    }

    private static object Term(ReadOnlySpan<byte> s, ref int pos)
    {
        byte op = s[pos++];
        switch (op)
        {
            case 0x08:
            {
                string name = NameString(s, ref pos);
                return new DecodedName(name, Data(s, ref pos));
            }
            case 0x10:
            {
                var body = Body(s, ref pos);
                int p = 0;
                string name = NameString(body, ref p);
                return new DecodedScope("Scope", name, TermList(body[p..]));
            }
            case 0x5B when s[pos] == 0x82:
            {
                pos++;
                var body = Body(s, ref pos);
                int p = 0;
                string name = NameString(body, ref p);
                return new DecodedScope("Device", name, TermList(body[p..]));
            }
            case 0x14:
            {
                var body = Body(s, ref pos);
                int p = 0;
                string name = NameString(body, ref p);
                byte flags = body[p++];
                return new DecodedMethod(name, flags, body[p..].ToArray());
            }
            default:
                Assert.Fail($"unexpected AML opcode 0x{op:x2} at {pos - 1}");
                return null!;
        }
    }

    public static object Data(ReadOnlySpan<byte> s, ref int pos)
    {
        byte op = s[pos++];
        switch (op)
        {
            case 0x00: return 0UL;
            case 0x01: return 1UL;
            case 0xFF: return ulong.MaxValue;
            case 0x0A: return (ulong)s[pos++];
            case 0x0B: pos += 2; return (ulong)BinaryPrimitives.ReadUInt16LittleEndian(s[(pos - 2)..]);
            case 0x0C: pos += 4; return (ulong)BinaryPrimitives.ReadUInt32LittleEndian(s[(pos - 4)..]);
            case 0x0E: pos += 8; return BinaryPrimitives.ReadUInt64LittleEndian(s[(pos - 8)..]);
            case 0x0D:
            {
                int end = s[pos..].IndexOf((byte)0);
                string value = Encoding.ASCII.GetString(s.Slice(pos, end));
                pos += end + 1;
                return value;
            }
            case 0x11:
            {
                var body = Body(s, ref pos);
                int p = 0;
                ulong size = Assert.IsType<ulong>(Data(body, ref p));
                Assert.Equal((ulong)(body.Length - p), size);
                return body[p..].ToArray();
            }
            case 0x12:
            case 0x13:
            {
                var body = Body(s, ref pos);
                int p = 0;
                ulong count = op == 0x12 ? body[p++] : Assert.IsType<ulong>(Data(body, ref p));
                var elements = new List<object>();
                while (p < body.Length) elements.Add(Data(body, ref p));
                Assert.Equal(count, (ulong)elements.Count);
                return elements;
            }
            default:
                pos--;
                return new DecodedReference(NameString(s, ref pos));
        }
    }

    /// <summary>Decodes a NameString to ASL form: "\_SB_.PCI0", "^^COM1", "\".</summary>
    public static string NameString(ReadOnlySpan<byte> s, ref int pos)
    {
        var sb = new StringBuilder();
        if (s[pos] == (byte)'\\') { sb.Append('\\'); pos++; }
        while (s[pos] == (byte)'^') { sb.Append('^'); pos++; }
        int segments;
        switch (s[pos])
        {
            case 0x00: pos++; return sb.ToString();
            case 0x2E: pos++; segments = 2; break;
            case 0x2F: segments = s[pos + 1]; pos += 2; break;
            default: segments = 1; break;
        }
        for (int i = 0; i < segments; i++)
        {
            string seg = Encoding.ASCII.GetString(s.Slice(pos, 4));
            Assert.Matches("^[A-Z_][A-Z0-9_]{3}$", seg);
            if (i > 0) sb.Append('.');
            sb.Append(seg);
            pos += 4;
        }
        return sb.ToString();
    }

    /// <summary>Splits a resource template into descriptors (tag byte + body), checking the End Tag and its checksum.</summary>
    public static List<(byte Tag, byte[] Body)> Resources(byte[] template)
    {
        var list = new List<(byte, byte[])>();
        int pos = 0;
        while (true)
        {
            byte tag = template[pos];
            int headerLength, length;
            if ((tag & 0x80) == 0) { length = tag & 0x07; headerLength = 1; }
            else { length = BinaryPrimitives.ReadUInt16LittleEndian(template.AsSpan(pos + 1)); headerLength = 3; }
            var body = template.AsSpan(pos + headerLength, length).ToArray();
            pos += headerLength + length;
            if (tag == 0x79)
            {
                Assert.Equal(template.Length, pos);
                Assert.Equal(0, GuestAcpi.Sum(template));
                return list;
            }
            list.Add((tag, body));
        }
    }
}
