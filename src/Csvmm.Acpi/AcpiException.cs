namespace Csvmm.Acpi;

/// <summary>
/// The ACPI layer's error: a configuration the tables cannot describe, an AML object that cannot be encoded, or tables
/// that do not fit the space reserved for them. The message is one line that says what is wrong.
/// </summary>
public sealed class AcpiException : Exception
{
    /// <summary>Creates the exception with a one-line message.</summary>
    public AcpiException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the error behind it.</summary>
    public AcpiException(string message, Exception innerException) : base(message, innerException) { }
}
