namespace Csvmm.Control;

/// <summary>
/// Cuts a byte stream into top-level JSON texts the way QMP reads its input (a stream of JSON objects, with or without
/// newlines between them): braces and brackets are counted outside strings (with their escapes); a top-level scalar
/// ends at whitespace or the start of the next value. Bounded: a text longer than <see cref="MaxLength"/> or nested
/// deeper than <see cref="MaxDepth"/> is reported as too large and skipped until the input is back at top level.
/// </summary>
public sealed class JsonStreamSplitter
{
    /// <summary>Largest JSON text accepted (QMP commands are small).</summary>
    public const int MaxLength = 1 << 20;

    /// <summary>Deepest nesting accepted.</summary>
    public const int MaxDepth = 64;

    private readonly List<byte> _current = [];
    private int _depth;
    private bool _inString, _escape, _scalar, _overflow;

    /// <summary>One result of <see cref="Push"/>: a complete text, or a text that was too large (dropped).</summary>
    public readonly record struct Piece(byte[]? Text, bool TooLarge);

    /// <summary>Feeds bytes; returns the texts they completed, in order.</summary>
    public List<Piece> Push(ReadOnlySpan<byte> data)
    {
        var done = new List<Piece>();
        foreach (byte b in data)
        {
            if (_scalar && _depth == 0 && (IsSpace(b) || b is (byte)'{' or (byte)'[' or (byte)'"'))
                Complete(done);
            if (_depth == 0 && !_scalar && !_inString && IsSpace(b) && _current.Count == 0) continue;

            Append(b);
            if (_inString)
            {
                if (_escape) _escape = false;
                else if (b == '\\') _escape = true;
                else if (b == '"')
                {
                    _inString = false;
                    if (_depth == 0) Complete(done); // a top-level string is a (non-object) text of its own
                }
                continue;
            }
            switch (b)
            {
                case (byte)'"':
                    _inString = true;
                    break;
                case (byte)'{' or (byte)'[':
                    if (++_depth > MaxDepth) _overflow = true;
                    break;
                case (byte)'}' or (byte)']':
                    if (_depth > 0 && --_depth == 0) Complete(done);
                    else if (_depth == 0) Complete(done); // a stray closer: hand it on, the parser reports it
                    break;
                default:
                    if (_depth == 0 && !IsSpace(b)) _scalar = true;
                    break;
            }
        }
        return done;
    }

    private void Append(byte b)
    {
        if (_current.Count >= MaxLength) { _overflow = true; return; }
        _current.Add(b);
    }

    private void Complete(List<Piece> done)
    {
        done.Add(_overflow ? new Piece(null, true) : new Piece(_current.ToArray(), false));
        _current.Clear();
        _depth = 0;
        _inString = _escape = _scalar = _overflow = false;
    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n';
}
