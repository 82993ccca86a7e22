using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

using Csvmm.TinyGuests;

namespace Csvmm.TinyGuests;

/// <summary>
/// Code fragments the tiny guests share, and the fixed guest layout they use. Every fragment only uses
/// instructions this host's KVM emulates (no <c>int n</c>, no <c>iretd</c>, except in the tests of the emulation fallback: see bench/README.md, "This host").
/// </summary>
public static class GuestCode
{
    // ---- platform (csvmm's Layout) ---------------------------------------------------------------
    public const ushort Com1 = 0x3F8;
    public const ushort Com1Lsr = Com1 + 5;
    public const byte LsrThrEmpty = 0x20;
    public const ushort AcpiPm1aControl = 0x604;
    /// <summary>PM1a_CNT value for S5: SLP_TYP = 5 in bits 10-12, SLP_EN = bit 13.</summary>
    public const ushort SleepS5 = (5 << 10) | (1 << 13);
    public const byte I8042Command = 0x64;
    public const byte I8042PulseReset = 0xFE;

    // ---- test devices ----------------------------------------------------------------------------
    /// <summary>Test port device: free in csvmm's port map (0x510-0x51B is fw_cfg when firmware boots).</summary>
    public const ushort TestPort = 0x530;
    /// <summary>Test MMIO device, in the 32-bit hole below 4 GiB (2 MiB aligned: the guest maps it with one large page).</summary>
    public const uint TestMmio = 0xBFE0_0000; // above the tests' small RAM, just below the PCI MMIO window (0xC0000000)

    // ---- where the pieces of a guest live (low BIOS alias, see FirmwareImage) --------------------
    public const uint Entry16 = 0xF0000;
    public const uint Code32 = 0xF4000;
    public const uint Code64 = 0xF8000;
    public const uint Data = 0xFC000;
    public const uint Gdt = Data;
    public const uint GdtPointer = Data + 0x100;
    public const uint ZeroIdtPointer = Data + 0x110;
    public const uint Strings = Data + 0x200;

    public const ushort Code32Selector = 0x08, DataSelector = 0x10, Code64Selector = 0x18;

    // ---- guest RAM the guests write -----------------------------------------------------------------
    public const uint Stack = 0x9000;
    public const uint Pml4 = 0x10000, Pdpt = 0x11000, PdLow = 0x12000, PdHole = 0x13000;
    public const uint Buffer = 0x20000;

    private static readonly ulong[] GdtEntries =
    [
        0,
        0x00CF_9B00_0000_FFFF, // 0x08: flat 32-bit code
        0x00CF_9300_0000_FFFF, // 0x10: flat data
        0x00AF_9B00_0000_FFFF, // 0x18: 64-bit code
    ];

    /// <summary>Waits for THR empty, then writes <paramref name="c"/> to COM1 (any bitness; clobbers AL, DX).</summary>
    public static void PutChar(Assembler a, char c)
    {
        var wait = a.CreateLabel();
        a.mov(dx, Com1Lsr);
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, LsrThrEmpty);
        a.jz(wait);
        a.mov(dx, Com1);
        a.mov(al, (byte)c);
        a.@out(dx, al);
    }

    /// <summary>Waits for THR empty, then writes the byte in BL to COM1 (any bitness; clobbers AL, DX).</summary>
    public static void PutBl(Assembler a)
    {
        var wait = a.CreateLabel();
        a.mov(dx, Com1Lsr);
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, LsrThrEmpty);
        a.jz(wait);
        a.mov(dx, Com1);
        a.mov(al, bl);
        a.@out(dx, al);
    }

    /// <summary>Writes <paramref name="text"/> to COM1 one polled byte at a time.</summary>
    public static void Print(Assembler a, string text)
    {
        foreach (char c in text) PutChar(a, c);
    }

    /// <summary>ACPI S5 (16-bit OUT to PM1a_CNT), then halts forever in case the VMM ignores it.</summary>
    public static void PowerOff(Assembler a)
    {
        a.mov(dx, AcpiPm1aControl);
        a.mov(ax, SleepS5);
        a.@out(dx, ax);
        HaltForever(a);
    }

    /// <summary>The i8042 "pulse reset line" command, then halts forever.</summary>
    public static void ResetViaI8042(Assembler a)
    {
        a.mov(al, I8042PulseReset);
        a.@out(I8042Command, al);
        HaltForever(a);
    }

    /// <summary><c>cli; hlt</c> in a loop.</summary>
    public static void HaltForever(Assembler a)
    {
        var again = a.CreateLabel();
        a.Label(ref again);
        a.cli();
        a.hlt();
        a.jmp(again);
    }

    /// <summary>Stores the GDT (flat code32/data, code64) and its pseudo-descriptor, and a zero IDT pointer.</summary>
    public static void AddTables(FirmwareImage image)
    {
        var gdt = new byte[GdtEntries.Length * 8];
        for (int i = 0; i < GdtEntries.Length; i++) BitConverter.TryWriteBytes(gdt.AsSpan(i * 8), GdtEntries[i]);
        image.AddData(Gdt, gdt, "GDT");
        var pointer = new byte[6];
        BitConverter.TryWriteBytes(pointer.AsSpan(0), (ushort)(gdt.Length - 1));
        BitConverter.TryWriteBytes(pointer.AsSpan(2), Gdt);
        image.AddData(GdtPointer, pointer, "GDT pointer");
        image.AddData(ZeroIdtPointer, new byte[10], "IDT pointer (limit 0)");
    }

    /// <summary>
    /// Real mode → protected mode: loads the GDT and far-jumps to <see cref="Code32"/> with CS = 0x08
    /// (the jump needs a 32-bit offset, hence the 0x66-prefixed ptr16:32 form).
    /// </summary>
    public static void EnterProtectedMode(Assembler a)
    {
        a.cli();
        a.mov(ax, FirmwareImage.Segment);
        a.mov(ds, ax);
        a.lgdt(__[(ulong)(GdtPointer - FirmwareImage.LowBase)]);
        a.mov(eax, cr0);
        a.or(eax, 1);
        a.mov(cr0, eax);
        a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, Code32Selector, Code32));
    }

    /// <summary>First thing in 32-bit code: flat data segments and a stack.</summary>
    public static void FlatSegments32(Assembler a)
    {
        a.mov(ax, DataSelector);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        a.mov(esp, Stack);
    }

    /// <summary>
    /// In 32-bit protected mode: builds 4-level page tables in RAM (first 1 GiB identity-mapped with 2 MiB pages,
    /// plus one uncached 2 MiB page at <see cref="TestMmio"/>), enables PAE, EFER.LME and paging, and far-jumps to
    /// 64-bit code at <see cref="Code64"/>.
    /// </summary>
    public static void EnterLongMode(Assembler a)
    {
        a.cld();
        a.mov(edi, Pml4);
        a.xor(eax, eax);
        a.mov(ecx, 4 * 4096 / 4);
        a.rep.stosd();
        a.mov(__dword_ptr[(ulong)Pml4], Pdpt | 3);
        a.mov(__dword_ptr[(ulong)Pdpt], PdLow | 3);
        a.mov(__dword_ptr[(ulong)(Pdpt + (TestMmio >> 30) * 8)], PdHole | 3);

        var fill = a.CreateLabel();
        a.mov(edi, PdLow);
        a.mov(eax, 0x83);                  // P | RW | PS
        a.mov(ecx, 512);
        a.Label(ref fill);
        a.mov(__dword_ptr[edi], eax);
        a.add(eax, 0x20_0000);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(fill);

        uint holeIndex = (TestMmio & 0x3FFF_FFFF) >> 21;
        a.mov(__dword_ptr[(ulong)(PdHole + holeIndex * 8)], TestMmio | 0x9B); // P | RW | PWT | PCD | PS

        a.mov(eax, cr4);
        a.or(eax, 0x20);                   // PAE
        a.mov(cr4, eax);
        a.mov(eax, Pml4);
        a.mov(cr3, eax);
        a.mov(ecx, 0xC000_0080);           // EFER
        a.rdmsr();
        a.or(eax, 0x100);                  // LME
        a.wrmsr();
        a.mov(eax, cr0);
        a.or(eax, unchecked((int)0x8000_0000)); // PG
        a.mov(cr0, eax);
        a.jmp(Code64Selector, Code64);
    }

    /// <summary>First thing in 64-bit code: data segments and a stack.</summary>
    public static void Prologue64(Assembler a)
    {
        a.mov(ax, DataSelector);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(rsp, Stack);
    }

    /// <summary>
    /// A complete guest that reaches 64-bit long mode the way a boot loader does and then runs
    /// <paramref name="body"/>. Returns the builder (for more data) and the placed 64-bit piece (for label addresses).
    /// </summary>
    public static (FirmwareImage Image, FirmwareImage.Placed Body) LongModeGuest(Action<Assembler> body)
    {
        var image = new FirmwareImage(fill: 0);
        AddTables(image);
        image.Add16(Entry16, "real-mode entry", EnterProtectedMode);
        image.Add32(Code32, "protected-mode page table setup", a =>
        {
            FlatSegments32(a);
            EnterLongMode(a);
        });
        var placed = image.Add64(Code64, "64-bit body", a =>
        {
            Prologue64(a);
            body(a);
        });
        return (image, placed);
    }
}
