using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>
/// Identity page tables for direct 64-bit entry: PML4 at <see cref="Layout.Pml4"/> → one PDPT at
/// <see cref="Layout.Pdpt"/> → four page directories at <see cref="Layout.PageDirs"/> of 2 MiB pages, mapping
/// [0, 4 GiB) virtual to the same physical addresses (what the Linux 64-bit boot protocol asks the loader for).
/// </summary>
public static class BootPageTables
{
    /// <summary>Bytes identity-mapped.</summary>
    public const ulong MappedBytes = 4UL << 30;
    /// <summary>Number of page directories (one per GiB).</summary>
    public const int PageDirectoryCount = 4;

    private const ulong Present = 1 << 0, Writable = 1 << 1, PageSize = 1 << 7;
    private const ulong LargePage = 2UL << 20;
    private const int EntriesPerTable = 512;

    /// <summary>Value for CR3.</summary>
    public static GuestAddress Cr3 => Layout.Pml4;

    /// <summary>Writes the PML4, the PDPT and the page directories (clearing whatever was in those pages).</summary>
    public static void Write(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Span<ulong> table = stackalloc ulong[EntriesPerTable];

        table.Clear();
        table[0] = Layout.Pdpt.Value | Present | Writable;
        WriteTable(memory, Layout.Pml4, table);

        table.Clear();
        for (int i = 0; i < PageDirectoryCount; i++)
            table[i] = PageDirectory(i).Value | Present | Writable;
        WriteTable(memory, Layout.Pdpt, table);

        for (int d = 0; d < PageDirectoryCount; d++)
        {
            for (int j = 0; j < EntriesPerTable; j++)
                table[j] = ((ulong)(d * EntriesPerTable + j) * LargePage) | Present | Writable | PageSize;
            WriteTable(memory, PageDirectory(d), table);
        }
    }

    /// <summary>Address of page directory <paramref name="index"/> (0..3).</summary>
    public static GuestAddress PageDirectory(int index) => Layout.PageDirs + (ulong)index * Size.Page;

    private static void WriteTable(GuestMemory memory, GuestAddress address, ReadOnlySpan<ulong> entries)
    {
        var page = memory.GetSpan(address, (int)Size.Page);
        for (int i = 0; i < entries.Length; i++)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(page[(i * 8)..], entries[i]);
    }
}

/// <summary>Control register and EFER values for the two direct-entry modes.</summary>
public static class BootControlRegisters
{
    /// <summary>CR0.PE: protected mode.</summary>
    public const ulong Cr0ProtectionEnable = 1UL << 0;
    /// <summary>CR0.ET: hard-wired to 1 on every CPU since the 486.</summary>
    public const ulong Cr0ExtensionType = 1UL << 4;
    /// <summary>CR0.PG: paging.</summary>
    public const ulong Cr0Paging = 1UL << 31;
    /// <summary>CR4.PAE: physical address extension.</summary>
    public const ulong Cr4Pae = 1UL << 5;
    /// <summary>EFER.LME: long mode enable.</summary>
    public const ulong EferLme = 1UL << 8;
    /// <summary>EFER.LMA: long mode active.</summary>
    public const ulong EferLma = 1UL << 10;

    /// <summary>CR0 for <see cref="EntryMode.Linux64"/>: protected mode with paging.</summary>
    public const ulong LongModeCr0 = Cr0ProtectionEnable | Cr0ExtensionType | Cr0Paging;
    /// <summary>CR4 for <see cref="EntryMode.Linux64"/>: PAE (required by long mode).</summary>
    public const ulong LongModeCr4 = Cr4Pae;
    /// <summary>EFER for <see cref="EntryMode.Linux64"/>: long mode enabled and active.</summary>
    public const ulong LongModeEfer = EferLme | EferLma;
    /// <summary>CR0 for <see cref="EntryMode.Pvh32"/>: protected mode, paging off.</summary>
    public const ulong ProtectedModeCr0 = Cr0ProtectionEnable | Cr0ExtensionType;
}
