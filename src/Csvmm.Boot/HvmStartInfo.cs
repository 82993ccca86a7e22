using System.Runtime.InteropServices;

namespace Csvmm.Boot;

/// <summary>
/// <c>struct hvm_start_info</c> of the PVH boot protocol (xen/include/public/arch-x86/hvm/start_info.h), version 1.
/// The PVH entry receives its address in EBX.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmStartInfo
{
    /// <summary>XEN_HVM_START_MAGIC_VALUE.</summary>
    public const uint MagicValue = 0x336E_C578;
    /// <summary>Version 1 adds the memory map.</summary>
    public const uint CurrentVersion = 1;

    /// <summary>Must be <see cref="MagicValue"/>.</summary>
    public uint Magic;
    /// <summary>Structure version; 1 has the memory map.</summary>
    public uint Version;
    /// <summary>SIF_* flags; 0 for csvmm.</summary>
    public uint Flags;
    /// <summary>Entries in the module list.</summary>
    public uint NrModules;
    /// <summary>Physical address of the <see cref="HvmModlistEntry"/> array.</summary>
    public ulong ModlistPaddr;
    /// <summary>Physical address of the NUL-terminated command line.</summary>
    public ulong CmdlinePaddr;
    /// <summary>Physical address of the ACPI RSDP, or 0.</summary>
    public ulong RsdpPaddr;
    /// <summary>Physical address of the <see cref="HvmMemmapTableEntry"/> array (version 1).</summary>
    public ulong MemmapPaddr;
    /// <summary>Entries in the memory map (version 1).</summary>
    public uint MemmapEntries;
    /// <summary>Must be zero.</summary>
    public uint Reserved;
}

/// <summary><c>struct hvm_modlist_entry</c>: one boot module (csvmm passes the initrd as module 0).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmModlistEntry
{
    /// <summary>Physical address of the module.</summary>
    public ulong Paddr;
    /// <summary>Module length in bytes.</summary>
    public ulong Size;
    /// <summary>Physical address of the module's command line, or 0.</summary>
    public ulong CmdlinePaddr;
    /// <summary>Must be zero.</summary>
    public ulong Reserved;
}

/// <summary><c>struct hvm_memmap_table_entry</c>: one memory map range; types are the E820 numbers.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmMemmapTableEntry
{
    /// <summary>First byte of the range.</summary>
    public ulong Addr;
    /// <summary>Length of the range.</summary>
    public ulong Size;
    /// <summary>An <see cref="E820Type"/> value.</summary>
    public uint Type;
    /// <summary>Must be zero.</summary>
    public uint Reserved;
}
