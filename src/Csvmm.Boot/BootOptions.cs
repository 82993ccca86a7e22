using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>What a kernel loader is given besides the kernel itself.</summary>
public sealed record BootOptions
{
    /// <summary>Kernel command line (no NUL bytes); written NUL-terminated at <see cref="Layout.Cmdline"/>.</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>Initial ramdisk, or null for none.</summary>
    public BootFile? Initrd { get; init; }

    /// <summary>Address of the ACPI RSDP the machine wrote (normally <see cref="Layout.AcpiStart"/>), or null for no ACPI.</summary>
    public GuestAddress? RsdpAddress { get; init; }
}
