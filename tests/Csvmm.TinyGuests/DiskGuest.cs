using System.Buffers.Binary;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

/// <summary>
/// The disk guest: a 64 KiB BIOS image that goes from the reset vector to 64-bit long mode (identity-mapped 2 MiB
/// user pages over 0-4 GiB), drops to CPL3 with IOPL 3 (this host's KVM runs only 64-bit CPL3 code natively), finds
/// its disk controller on PCI bus 0 through 0xCF8/0xCFC, assigns BARs the firmware left at 0, and runs the operation
/// list patched into the image. Everything is polled: virtio with VRING_AVAIL_F_NO_INTERRUPT, IDE with nIEN.
/// <para>COM1 protocol (one line each): <c>DISK virtio 1af4:1042 00:04.0 sectors=N</c>, <c>OK …</c> per operation,
/// <c>BENCH seq-start</c> / <c>BENCH seq-done N</c> / <c>BENCH rand-start</c> / <c>BENCH rand-done N</c>, then <c>PASS</c>
/// or <c>FAIL what code</c>. Exit: <c>out 0xf4</c> (0 after PASS, 1 after FAIL: QEMU's isa-debug-exit ends with 1 or 3),
/// then S5 through PM1a_CNT at 0x604 (csvmm powers off).</para>
/// </summary>
public static class DiskGuest
{
    private static readonly Lazy<byte[]> Template = new(() => new DiskGuestCode().Build());

    /// <summary>The image for <paramref name="options"/>: the shared code with the operation block patched in.</summary>
    public static byte[] Build(DiskGuestOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        byte[] block = options.Encode();
        byte[] image = (byte[])Template.Value.Clone();
        block.CopyTo(image, (int)(L.OpBlock - FirmwareImage.LowBase));
        return image;
    }

    /// <summary>Writes <see cref="Build"/>'s image to <paramref name="path"/>.</summary>
    public static void Save(DiskGuestOptions options, string path) => File.WriteAllBytes(path, Build(options));
}

/// <summary>Emits the guest's code (see <see cref="DiskGuest"/>). Calling convention of the CPL3 subroutines: arguments
/// and results in registers as documented; rax, rcx, rdx, rsi, rdi, r8-r11 clobbered; rbx, rbp (= <see cref="L.Vars"/>),
/// r12-r15 preserved.</summary>
internal sealed partial class DiskGuestCode
{
    // ---- driver state at L.Vars (offsets from rbp) --------------------------------------------------------------
    private const int VIface = 0x00, VFlags = 0x04, VChunk = 0x08, VPioMult = 0x0C, VSectors = 0x10, VLba48 = 0x18, VBdf = 0x1C;
    private const int VMemNext = 0x20, VIoNext = 0x24, VCommon = 0x28, VNotify = 0x30, VIsr = 0x38, VDevCfg = 0x40;
    private const int VNotifyMul = 0x48, VQSize = 0x4C, VAvailShadow = 0x50, VAvailPublished = 0x54, VUsedLast = 0x58, VMaxQd = 0x5C;
    private const int VAtaBase = 0x60, VAtaCtl = 0x64, VBmBase = 0x68, VDriveSel = 0x6C;
    private const int VOpPtr = 0x70, VOpLeft = 0x78, VCapFound = 0x7C;
    private const int BNext = 0x80, BRng = 0x88, BToSubmit = 0x90, BInFlight = 0x98, BReqSect = 0xA0, BRange = 0xA8, BRand = 0xB0, BQd = 0xB4, BDone = 0xB8;
    private const int VDeadline = 0xC0, VPollCount = 0xC8, VTimeout = 0xD0, VVenDev = 0xD8;
    private const int TLba = 0xE0, TCount = 0xE8, TCmd28 = 0xF0, TCmd48 = 0xF4, TBmStatus = 0xF8, VPollPauses = 0xFC;

    private const int ErrTimeout = 0x7100, ErrNoLba48 = 0x7200, ErrBadResult = 0x7300;

    private readonly Assembler _a = new(64);
    private readonly MemoryStream _strings = new();
    private readonly Dictionary<string, ulong> _stringAddresses = [];

    // Subroutines (labels are created up front so any piece can call any other).
    private Label _putc, _printStr, _printDec, _printHex, _printHexN, _fail, _exit;
    private Label _pciRead32, _pciWrite32, _pciRead8, _pciRead16, _pciWrite16, _pciFind, _pciAssignBars, _barBase;
    private Label _virtioInit, _virtioSubmit, _virtioKick, _virtioWait, _virtioRw, _virtioFlush;
    private Label _ideInit, _ideWaitReady, _ideIssue, _idePioRw, _ideDmaRw, _ideFlush;
    private Label _diskRw, _diskFlush, _patternFill, _patternCheck, _genLba, _benchVirtio, _benchSync, _timeoutSetup;

    public byte[] Build()
    {
        foreach (var field in typeof(DiskGuestCode).GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic))
            if (field.FieldType == typeof(Label)) field.SetValue(this, _a.CreateLabel(field.Name.TrimStart('_')));

        var image = new FirmwareImage();
        image.Add(RealModeEntry(), L.Entry16, "real-mode entry");
        image.AddData(L.GdtAddress, Gdt(), "GDT");
        image.AddData(L.GdtPointer, GdtPointer(), "GDT pointer");
        image.Add(ProtectedModeSetup(), L.Code32, "protected-mode page tables");

        EmitLongModeEntry();
        EmitMain();
        EmitRuntime();
        EmitPci();
        EmitVirtio();
        EmitIde();
        EmitOps();
        image.Add(_a, L.Code64, "64-bit code");

        if (_strings.Length > L.StringsSize) throw new InvalidOperationException("string pool overflow");
        image.AddData(L.Strings, _strings.ToArray(), "strings");
        return image.Build((ushort)(L.Entry16 - FirmwareImage.LowBase));
    }

    // ---- start-up: real mode → protected mode → long mode → CPL3 -------------------------------------------------

    private static Assembler RealModeEntry()
    {
        var a = new Assembler(16);
        a.cli();
        a.cld();
        a.mov(ax, FirmwareImage.Segment);
        a.mov(ds, ax);
        a.lgdt(__[(ulong)(L.GdtPointer - FirmwareImage.LowBase)]);
        a.mov(eax, cr0);
        a.or(eax, 1);
        a.mov(cr0, eax);
        a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, L.Code32Selector, L.Code32));
        return a;
    }

    /// <summary>
    /// Null, code32, data, code64 (DPL 0), user data, user code64 (DPL 3). Accessed bits preset: the GDT is in ROM and a
    /// CPU that must set the bit writes the descriptor (which stalls this host's emulating KVM).
    /// </summary>
    private static byte[] Gdt()
    {
        ulong[] entries = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF, 0x00AF_9B00_0000_FFFF, 0x00CF_F300_0000_FFFF, 0x00AF_FB00_0000_FFFF];
        var gdt = new byte[entries.Length * 8];
        for (int i = 0; i < entries.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(i * 8), entries[i]);
        return gdt;
    }

    private static byte[] GdtPointer()
    {
        var p = new byte[6];
        BinaryPrimitives.WriteUInt16LittleEndian(p, (ushort)(Gdt().Length - 1));
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(2), L.GdtAddress);
        return p;
    }

    /// <summary>
    /// 32-bit (emulated here, so short): page tables identity-mapping 0-4 GiB with 2 MiB user pages (the 4th GiB, where
    /// the BARs live, uncached), PAE, EFER.LME, paging, far jmp to 64-bit code.
    /// </summary>
    private static Assembler ProtectedModeSetup()
    {
        var a = new Assembler(32);
        a.mov(ax, L.DataSelector);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(esp, L.KernelStack);
        a.cld();
        a.mov(edi, L.Pml4);
        a.xor(eax, eax);
        a.mov(ecx, (L.PageDirectories + 4 * 0x1000 - L.Pml4) / 4);
        a.rep.stosd();
        const int user = 7; // P | RW | US
        a.mov(__dword_ptr[(ulong)L.Pml4], L.Pdpt | user);
        for (uint i = 0; i < 4; i++) a.mov(__dword_ptr[(ulong)(L.Pdpt + i * 8)], (L.PageDirectories + i * 0x1000) | user);
        var fill = a.CreateLabel();
        a.mov(edi, L.PageDirectories);
        a.mov(eax, 0x87);                 // P | RW | US | PS
        a.mov(ecx, 4 * 512);
        a.Label(ref fill);
        a.mov(__dword_ptr[edi], eax);
        a.add(eax, 0x20_0000);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(fill);
        var uncached = a.CreateLabel();
        a.mov(edi, L.PageDirectories + 3 * 0x1000);
        a.mov(ecx, 512);
        a.Label(ref uncached);
        a.or(__dword_ptr[edi], 0x18);     // PWT | PCD
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(uncached);

        a.mov(eax, cr4);
        a.or(eax, 0x20);                  // PAE
        a.mov(cr4, eax);
        a.mov(eax, L.Pml4);
        a.mov(cr3, eax);
        a.mov(ecx, 0xC000_0080);          // EFER
        a.rdmsr();
        a.or(eax, 0x100);                 // LME
        a.wrmsr();
        a.mov(eax, cr0);
        a.or(eax, unchecked((int)0x8000_0000));
        a.mov(cr0, eax);
        a.jmp(L.Code64Selector, L.Code64);
        return a;
    }

    /// <summary>At CPL0 in long mode: an iretq frame that lands at CPL3 with IOPL 3 (port I/O allowed) on the user stack.</summary>
    private void EmitLongModeEntry()
    {
        var a = _a;
        var user = a.CreateLabel("user");
        a.mov(ax, L.DataSelector);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(rsp, L.KernelStack);
        a.push(L.UserDataSelector | 3);
        a.push((int)L.UserStack);
        a.push(0x3002);                   // IOPL 3, reserved bit 1; IF = 0
        a.push(L.UserCode64Selector | 3);
        a.lea(rax, __[user]);
        a.push(rax);
        a.iretq();
        a.Label(ref user);
    }

    // ---- helpers ------------------------------------------------------------------------------------------------

    /// <summary>Address of a NUL-terminated string in the image's string pool.</summary>
    private ulong Str(string text)
    {
        if (_stringAddresses.TryGetValue(text, out ulong address)) return address;
        address = L.Strings + (ulong)_strings.Length;
        foreach (char c in text) _strings.WriteByte((byte)c);
        _strings.WriteByte(0);
        _stringAddresses[text] = address;
        return address;
    }

    private void Print(string text)
    {
        _a.mov(esi, (uint)Str(text));
        _a.call(_printStr);
    }

    /// <summary>Prints <paramref name="text"/> and the decimal value of <paramref name="reg"/> (clobbers caller-saved registers).</summary>
    private void PrintDec(string text, AssemblerRegister64 reg)
    {
        if (reg != rax) _a.mov(rax, reg);
        _a.push(rax);
        _a.push(rax);
        Print(text);
        _a.pop(rax);
        _a.pop(rax);
        _a.call(_printDec);
    }

    private void PrintDecMem(string text, AssemblerMemoryOperand mem)
    {
        Print(text);
        _a.mov(rax, mem);
        _a.call(_printDec);
    }

    /// <summary>Fails with the code in eax: prints <c>FAIL what code</c> and exits.</summary>
    private void FailWith(string what)
    {
        _a.mov(esi, (uint)Str(what));
        _a.jmp(_fail);
    }

    /// <summary>Starts a poll deadline (<see cref="VTimeout"/> TSC ticks from now). No registers changed.</summary>
    private void TimeoutStart() => _a.call(_timeoutSetup);

    /// <summary>Inside a poll loop: every 256th pass compares the TSC with the deadline and jumps to <paramref name="expired"/>. Flags clobbered only.</summary>
    private void TimeoutCheck(Label expired)
    {
        var a = _a;
        var ok = a.CreateLabel();
        a.dec(__dword_ptr[rbp + VPollCount]);
        a.jnz(ok);
        a.mov(__dword_ptr[rbp + VPollCount], 256);
        a.push(rax);
        a.push(rdx);
        a.rdtsc();
        a.shl(rdx, 32);
        a.or(rax, rdx);
        a.cmp(rax, __qword_ptr[rbp + VDeadline]);
        a.pop(rdx);
        a.pop(rax);
        a.ja(expired);
        a.Label(ref ok);
    }

    private void Define(ref Label label) => _a.Label(ref label);
}
