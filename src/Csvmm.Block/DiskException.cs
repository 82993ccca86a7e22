namespace Csvmm.Block;

/// <summary>
/// The block layer's error: a disk image that cannot be used (missing, a directory, empty, odd-sized, locked by
/// another process, ...). Thrown only while opening, never from a request. The message is one line and
/// names the path, ready to print as it is.
/// </summary>
public sealed class DiskException : Exception
{
    public DiskException(string message, int errno = 0) : base(message) => Errno = errno;

    /// <summary>The errno behind the failure, or 0 when it was a validation rule (empty, odd size, ...).</summary>
    public int Errno { get; }
}
