using System.Buffers.Binary;
using Csvmm.TinyGuests;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Bench.Guests;

/// <summary>
/// The benchmark guests: N port-I/O or N MMIO exits, then an exit sequence every VMM under test understands.
/// </summary>
public static class GuestPrograms
{
    /// <summary>Port the PIO loop writes: the POST-code port, ignored by QEMU and csvmm alike.</summary>
    public const byte PostCodePort = 0x80;

    /// <summary>Address the MMIO loop writes: in the 32-bit PCI hole, with no device behind it in any of the VMMs.</summary>
    public const uint UnbackedMmioAddress = 0xD000_0000;

    /// <summary>QEMU's <c>isa-debug-exit</c> port (the benchmark configures it at 0xf4); csvmm ignores it.</summary>
    public const byte DebugExitPort = 0xF4;

    /// <summary>csvmm's ACPI PM1a control register (Layout.AcpiPm1aControl).</summary>
    public const ushort Pm1aControlPort = 0x604;

    /// <summary>PM1a_CNT value requesting S5: SLP_TYP = 5 (bits 10-12) with SLP_EN (bit 13).</summary>
    public const ushort SleepS5 = (5 << 10) | (1 << 13);

    // Layout of the MMIO image: 16-bit start-up code, then the GDT and its descriptor, then the 32-bit part.
    private const int RealModeCodeOffset = 0x000;
    private const int GdtOffset = 0x080;
    private const int GdtrOffset = GdtOffset + 3 * 8;
    private const int ProtectedCodeOffset = 0x100;
    private const ushort FlatCodeSelector = 0x08;
    private const ushort FlatDataSelector = 0x10;

    /// <summary>Real mode: <c>mov ecx, N</c>, N × <c>out 0x80, al</c>, then the exit sequence.</summary>
    public static byte[] PioLoop(uint iterations)
    {
        var image = new FirmwareImage();
        var a = new Assembler(16);
        a.cli();
        EmitCountedLoop(a, iterations, () => a.@out(PostCodePort, al));
        EmitExitSequence(a);
        Place(image, a, RealModeCodeOffset, ProtectedCodeOffset, "pio loop");
        return image.Build();
    }

    /// <summary>
    /// Real mode: N × <c>popcnt eax, ebx</c>, then the exit sequence. An emulating KVM such as kvm_pvm cannot execute
    /// popcnt: every one is an emulation-failure exit that csvmm's fallback carries out (QEMU stops at the first).
    /// </summary>
    public static byte[] PopcntLoop(uint iterations)
    {
        var image = new FirmwareImage();
        var a = new Assembler(16);
        a.cli();
        a.mov(ebx, 0xF0F0);
        EmitCountedLoop(a, iterations, () => a.popcnt(eax, ebx));
        EmitExitSequence(a);
        Place(image, a, RealModeCodeOffset, ProtectedCodeOffset, "popcnt loop");
        return image.Build();
    }

    /// <summary>
    /// lgdt, CR0.PE and a far jmp into 32-bit flat protected mode, then N × <c>mov dword [0xD0000000], eax</c>,
    /// then the exit sequence.
    /// </summary>
    public static byte[] MmioLoop(uint iterations)
    {
        var image = new FirmwareImage();

        var real = new Assembler(16);
        real.cli();
        real.mov(ax, cs);                        // DS = F000 so the descriptor below is addressable by its image offset
        real.mov(ds, ax);
        real.lgdt(__fword_ptr[GdtrOffset]);
        real.mov(eax, cr0);
        real.or(eax, 1);                         // CR0.PE
        real.mov(cr0, eax);
        real.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, FlatCodeSelector, FirmwareImage.LowBase + ProtectedCodeOffset));
        Place(image, real, RealModeCodeOffset, GdtOffset - RealModeCodeOffset, "real-mode start-up");

        image.AddData(FirmwareImage.LowBase + GdtOffset, FlatGdt(), "GDT and GDTR");

        var pm = new Assembler(32);
        pm.mov(ax, FlatDataSelector);
        pm.mov(ds, ax);
        pm.mov(es, ax);
        pm.mov(ss, ax);
        EmitCountedLoop(pm, iterations, () => pm.mov(__dword_ptr[UnbackedMmioAddress], eax));
        EmitExitSequence(pm);
        Place(image, pm, ProtectedCodeOffset, FirmwareImage.ResetVectorOffset - ProtectedCodeOffset, "mmio loop");
        return image.Build();
    }

    /// <summary>Assembles <paramref name="code"/> at image <paramref name="offset"/> and checks it fits in <paramref name="room"/> bytes.</summary>
    private static void Place(FirmwareImage image, Assembler code, int offset, int room, string what)
    {
        var placed = image.Add(code, FirmwareImage.LowBase + (uint)offset, what);
        if (placed.Length > room)
            throw new InvalidOperationException($"{what} ({placed.Length} bytes) does not fit in its 0x{room:x} bytes at 0x{offset:x}");
    }

    /// <summary><c>mov ecx, N</c>; skip when zero; otherwise run <paramref name="body"/> N times (<c>dec ecx; jnz</c>).</summary>
    private static void EmitCountedLoop(Assembler a, uint iterations, Action body)
    {
        var top = a.CreateLabel("loop");
        var done = a.CreateLabel("done");
        a.mov(ecx, iterations);
        a.test(ecx, ecx);
        a.jz(done);
        a.Label(ref top);
        body();
        a.dec(ecx);
        a.jnz(top);
        a.Label(ref done);
    }

    /// <summary>
    /// <c>out 0xf4, al</c> with al = 0 (ends QEMU via isa-debug-exit; the C loop stops here), then a 16-bit write of
    /// S5 to PM1a_CNT (csvmm powers off), then <c>cli; hlt</c> forever. Valid in 16- and 32-bit code.
    /// </summary>
    private static void EmitExitSequence(Assembler a)
    {
        var halt = a.CreateLabel("halt");
        a.xor(eax, eax);
        a.@out(DebugExitPort, al);
        a.mov(dx, Pm1aControlPort);
        a.mov(ax, SleepS5);
        a.@out(dx, ax);
        a.Label(ref halt);
        a.cli();
        a.hlt();
        a.jmp(halt);
    }

    /// <summary>
    /// Null, flat 4 GiB code (0x08) and flat 4 GiB data (0x10) descriptors, then the 6-byte GDTR pointing at them.
    /// The accessed bits are preset: the GDT lives in ROM in QEMU, and a CPU that has to set the bit on a segment
    /// load writes the descriptor (under this host's emulating KVM that write to ROM stalls the far jmp forever).
    /// </summary>
    private static byte[] FlatGdt()
    {
        var gdt = new byte[3 * 8 + 6];
        BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(8), 0x00CF_9B00_0000_FFFF);   // code: base 0, limit 4 GiB, 32-bit, execute/read, accessed
        BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(16), 0x00CF_9300_0000_FFFF);  // data: base 0, limit 4 GiB, 32-bit, read/write, accessed
        BinaryPrimitives.WriteUInt16LittleEndian(gdt.AsSpan(24), 3 * 8 - 1);
        BinaryPrimitives.WriteUInt32LittleEndian(gdt.AsSpan(26), FirmwareImage.LowBase + GdtOffset);
        return gdt;
    }
}
