namespace Csvmm.Block;

/// <summary>
/// Per-disk request counters, updated on the I/O path (one interlocked add each: far below the cost of the
/// system call it counts, and correct when IDE on a vCPU thread and virtio-blk on an I/O thread share nothing
/// but the counters). Successful requests count as operations; every failed one counts in <see cref="Errors"/>.
/// </summary>
public sealed class DiskCounters
{
    private long _reads, _writes, _bytesRead, _bytesWritten, _flushes, _discards, _writeZeroes, _errors, _bounced;

    public long Reads => Volatile.Read(ref _reads);
    public long Writes => Volatile.Read(ref _writes);
    public long BytesRead => Volatile.Read(ref _bytesRead);
    public long BytesWritten => Volatile.Read(ref _bytesWritten);
    public long Flushes => Volatile.Read(ref _flushes);
    public long Discards => Volatile.Read(ref _discards);
    public long WriteZeroes => Volatile.Read(ref _writeZeroes);
    /// <summary>Failed requests of any kind (out of range, read-only, host errors).</summary>
    public long Errors => Volatile.Read(ref _errors);
    /// <summary>Requests that went through the aligned bounce buffer because O_DIRECT could not take them as they were.</summary>
    public long Bounced => Volatile.Read(ref _bounced);

    public void RecordRead(int bytes) { Interlocked.Increment(ref _reads); Interlocked.Add(ref _bytesRead, bytes); }
    public void RecordWrite(int bytes) { Interlocked.Increment(ref _writes); Interlocked.Add(ref _bytesWritten, bytes); }
    public void RecordFlush() => Interlocked.Increment(ref _flushes);
    public void RecordDiscard() => Interlocked.Increment(ref _discards);
    public void RecordWriteZeroes() => Interlocked.Increment(ref _writeZeroes);
    public void RecordError() => Interlocked.Increment(ref _errors);
    public void RecordBounce() => Interlocked.Increment(ref _bounced);

    /// <summary>Counts <paramref name="result"/> as an error when it failed; returns it unchanged (for tail calls).</summary>
    public DiskIoResult Error(DiskIoResult result)
    {
        if (!result.IsOk) RecordError();
        return result;
    }

    public override string ToString() =>
        $"reads={Reads} ({BytesRead} B) writes={Writes} ({BytesWritten} B) flushes={Flushes} discards={Discards} " +
        $"write-zeroes={WriteZeroes} errors={Errors} bounced={Bounced}";
}
