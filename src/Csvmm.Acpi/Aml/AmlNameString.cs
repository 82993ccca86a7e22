namespace Csvmm.Acpi.Aml;

/// <summary>
/// An AML NameString (ACPI 6.0 section 20.2.2): an optional root prefix '\' or parent prefixes '^', then zero or
/// more 4-character NameSegs separated by '.' in ASL. Segments shorter than 4 characters are padded with '_'
/// as ASL does ("PCI" is "PCI_"). Encoded as the prefixes followed by one segment, DualNamePrefix + 2 segments,
/// MultiNamePrefix + count + segments, or NullName when there are none.
/// </summary>
public sealed class AmlNameString : IAmlObject
{
    private readonly string[] _segments;

    private AmlNameString(bool isRooted, int parentPrefixes, string[] segments)
    {
        IsRooted = isRooted;
        ParentPrefixes = parentPrefixes;
        _segments = segments;
    }

    /// <summary>True for an absolute path ('\' prefix).</summary>
    public bool IsRooted { get; }

    /// <summary>Number of '^' prefixes.</summary>
    public int ParentPrefixes { get; }

    /// <summary>The 4-character segments, padded.</summary>
    public IReadOnlyList<string> Segments => _segments;

    /// <summary>
    /// Parses an ASL path such as "\_SB.PCI0", "^^COM1" or "_HID". Throws <see cref="AcpiException"/> when a segment
    /// is empty, longer than 4 characters, or has a character outside [A-Z0-9_] (or a leading digit).
    /// </summary>
    public static AmlNameString Parse(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        int i = 0;
        bool rooted = false;
        int parents = 0;
        if (path.StartsWith('\\'))
        {
            rooted = true;
            i = 1;
        }
        else
        {
            while (i < path.Length && path[i] == '^') i++;
            parents = i;
        }
        string rest = path[i..];
        if (rest.Length == 0)
        {
            if (!rooted)
                throw new AcpiException($"AML name '{path}' has no name segment");
            return new AmlNameString(rooted, parents, []);
        }
        var parts = rest.Split('.');
        if (parts.Length > 255)
            throw new AcpiException($"AML name '{path}' has more than 255 segments");
        var segments = new string[parts.Length];
        for (int s = 0; s < parts.Length; s++)
            segments[s] = Segment(parts[s], path);
        return new AmlNameString(rooted, parents, segments);
    }

    /// <summary>Parses <paramref name="path"/>; see <see cref="Parse"/>.</summary>
    public static implicit operator AmlNameString(string path) => Parse(path);

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        if (IsRooted) writer.WriteByte(AmlOpcodes.RootChar);
        for (int i = 0; i < ParentPrefixes; i++) writer.WriteByte(AmlOpcodes.ParentPrefix);
        switch (_segments.Length)
        {
            case 0:
                writer.WriteByte(AmlOpcodes.NullName);
                return;
            case 1:
                break;
            case 2:
                writer.WriteByte(AmlOpcodes.DualNamePrefix);
                break;
            default:
                writer.WriteByte(AmlOpcodes.MultiNamePrefix);
                writer.WriteByte((byte)_segments.Length);
                break;
        }
        foreach (string segment in _segments)
            foreach (char c in segment) writer.WriteByte((byte)c);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        (IsRooted ? "\\" : new string('^', ParentPrefixes)) + string.Join('.', _segments);

    private static string Segment(string part, string path)
    {
        if (part.Length is 0 or > 4)
            throw new AcpiException($"AML name '{path}' has a segment '{part}' that is not 1-4 characters");
        for (int i = 0; i < part.Length; i++)
        {
            char c = part[i];
            bool ok = c is (>= 'A' and <= 'Z') or '_' || (i > 0 && c is >= '0' and <= '9');
            if (!ok)
                throw new AcpiException($"AML name '{path}' has an invalid character '{c}' in segment '{part}'");
        }
        return part.PadRight(4, '_');
    }
}
