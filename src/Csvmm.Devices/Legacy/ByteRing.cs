namespace Csvmm.Devices.Legacy;

/// <summary>
/// A fixed-capacity byte FIFO that never allocates after construction. Not thread-safe: the owning device
/// guards it with its own lock.
/// </summary>
internal sealed class ByteRing
{
    private readonly byte[] _buffer;
    private int _head;
    private int _count;

    public ByteRing(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _buffer = new byte[capacity];
    }

    public int Count => _count;
    public int Capacity => _buffer.Length;
    public bool IsEmpty => _count == 0;

    /// <summary>Appends <paramref name="value"/> unless the ring is full.</summary>
    public bool TryEnqueue(byte value)
    {
        if (_count == _buffer.Length) return false;
        _buffer[(_head + _count) % _buffer.Length] = value;
        _count++;
        return true;
    }

    /// <summary>Appends as many bytes of <paramref name="data"/> as fit; returns how many.</summary>
    public int Enqueue(ReadOnlySpan<byte> data)
    {
        int n = Math.Min(data.Length, _buffer.Length - _count);
        for (int i = 0; i < n; i++) _buffer[(_head + _count + i) % _buffer.Length] = data[i];
        _count += n;
        return n;
    }

    public bool TryDequeue(out byte value)
    {
        if (_count == 0)
        {
            value = 0;
            return false;
        }
        value = _buffer[_head];
        _head = (_head + 1) % _buffer.Length;
        _count--;
        return true;
    }

    /// <summary>Overwrites the most recently enqueued byte (a 16450 receiver buffer being overrun).</summary>
    public void ReplaceNewest(byte value)
    {
        if (_count == 0) throw new InvalidOperationException("the ring is empty");
        _buffer[(_head + _count - 1) % _buffer.Length] = value;
    }

    public void Clear()
    {
        _head = 0;
        _count = 0;
    }

    /// <summary>The queued bytes, oldest first (for a saved state; allocates: control path only).</summary>
    public byte[] ToArray()
    {
        var bytes = new byte[_count];
        for (int i = 0; i < _count; i++) bytes[i] = _buffer[(_head + i) % _buffer.Length];
        return bytes;
    }

    /// <summary>Replaces the contents with <paramref name="data"/>, which must fit.</summary>
    public void Reload(ReadOnlySpan<byte> data)
    {
        if (data.Length > _buffer.Length) throw new ArgumentException("more bytes than the ring holds", nameof(data));
        Clear();
        data.CopyTo(_buffer);
        _count = data.Length;
    }
}
