using System.Text.RegularExpressions;
using Csvmm.TinyGuests;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.TinyGuests;

/// <summary>
/// Guests that count and print each value on COM1 as 8 hex digits and a newline, for save/restore and migration:
/// a machine that continues must print the next value, and a guest that checks its own RAM says "BAD" when a page
/// came back stale.
/// </summary>
public static partial class CountingGuests
{
    public const uint Counter = 0x7000;
    /// <summary>Where <see cref="RamWriter"/> writes: 8 MiB, above everything else the guests use.</summary>
    public const uint WriterBase = 0x80_0000;

    /// <summary>A real-mode guest: the counter lives in RAM at <see cref="Counter"/>.</summary>
    public static byte[] RealModeCounter()
    {
        var image = new FirmwareImage(fill: 0);
        image.Add16(GuestCode.Entry16, "count", a =>
        {
            a.xor(ax, ax);
            a.mov(ds, ax);
            a.mov(__dword_ptr[Counter], 0);
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.mov(ecx, __dword_ptr[Counter]);
            a.inc(ecx);
            a.mov(__dword_ptr[Counter], ecx);
            PrintEcx(a);
            a.mov(esi, 20000);
            var delay = a.CreateLabel();
            a.Label(ref delay);
            a.dec(esi);
            a.jnz(delay);
            a.jmp(loop);
        });
        return image.Build();
    }

    /// <summary>
    /// A 64-bit guest that, each round, checks that every one of <paramref name="pages"/> pages from
    /// <see cref="WriterBase"/> holds the previous round's number (prints "BAD" and halts if one does not) and writes the
    /// new number into it, then prints the number. A migration that loses a dirty page is caught by the guest itself.
    /// </summary>
    public static byte[] RamWriter(int pages)
    {
        var (image, _) = GuestCode.LongModeGuest(a =>
        {
            // Page by page: check the old number, write the new one, so the guest writes all the time (a stop can
            // come anywhere in a round: the pages before it hold the new number, the rest the old, as the registers say).
            var loop = a.CreateLabel();
            var page = a.CreateLabel();
            var bad = a.CreateLabel();
            a.xor(r8d, r8d);
            a.Label(ref loop);
            a.lea(r9, __[r8 + 1]);
            a.mov(rdi, WriterBase);
            a.mov(ecx, pages);
            a.Label(ref page);
            a.cmp(__qword_ptr[rdi], r8);
            a.jne(bad);
            a.mov(__qword_ptr[rdi], r9);
            a.add(rdi, 4096);
            a.dec(ecx);
            a.jnz(page);
            a.mov(r8, r9);
            a.mov(ecx, r8d);
            PrintEcx(a);
            a.jmp(loop);
            a.Label(ref bad);
            foreach (char c in "BAD\n") GuestCode.PutChar(a, c);
            var halt = a.CreateLabel();
            a.Label(ref halt);
            a.hlt();
            a.jmp(halt);
        });
        return image.Build();
    }

    /// <summary>Prints ECX as 8 hex digits and a newline (clobbers EBX, AL, DX; ECX is rotated back to itself).</summary>
    private static void PrintEcx(Assembler a)
    {
        for (int i = 0; i < 8; i++)
        {
            var digit = a.CreateLabel();
            a.rol(ecx, 4);
            a.mov(bl, cl);
            a.and(bl, 0xF);
            a.add(bl, (byte)'0');
            a.cmp(bl, (byte)'9');
            a.jbe(digit);
            a.add(bl, 7);
            a.Label(ref digit);
            GuestCode.PutBl(a);
        }
        GuestCode.PutChar(a, '\n');
    }

    /// <summary>The numbers a counting guest printed, in order.</summary>
    public static List<uint> Numbers(string serial) =>
        Line().Matches(serial).Select(m => Convert.ToUInt32(m.Groups[1].Value, 16)).ToList();

    [GeneratedRegex(@"(?m)^([0-9A-F]{8})$")]
    private static partial Regex Line();
}
