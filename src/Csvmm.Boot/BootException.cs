namespace Csvmm.Boot;

/// <summary>
/// The boot layer's error: a kernel, initrd or firmware image that is unreadable, malformed or does not fit the
/// guest. The message is one line that names the file and says what is wrong with it.
/// </summary>
public sealed class BootException : Exception
{
    /// <summary>Creates the exception with a one-line message.</summary>
    public BootException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the I/O error behind it.</summary>
    public BootException(string message, Exception innerException) : base(message, innerException) { }
}
