namespace Csvmm.Acpi;

/// <summary>The identification every csvmm table carries in its header (ACPI 6.0 section 5.2.6).</summary>
public static class AcpiIds
{
    /// <summary>OEM ID: 6 ASCII characters, space padded.</summary>
    public const string OemId = "CSVMM ";
    /// <summary>OEM Table ID: 8 ASCII characters, space padded.</summary>
    public const string OemTableId = "CSVMMVM ";
    /// <summary>OEM Revision.</summary>
    public const uint OemRevision = 1;
    /// <summary>Creator ID: the vendor of the tool that made the tables (4 ASCII characters).</summary>
    public const string CreatorId = "CSVM";
    /// <summary>Creator Revision.</summary>
    public const uint CreatorRevision = 1;
    /// <summary>FADT Hypervisor Vendor Identity: "CSVMM" padded with NULs to 8 bytes, read as a little-endian u64.</summary>
    public const string HypervisorVendor = "CSVMM";
}
