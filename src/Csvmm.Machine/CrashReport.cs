using System.Text;
using Csvmm.Kvm;
using Csvmm.Memory;
using Iced.Intel;

namespace Csvmm.Machine;

/// <summary>
/// The one report printed when a guest dies: exit reason and suberror, registers, segment state and the
/// instructions at RIP disassembled with Iced in the vCPU's current mode (16, 32 or 64-bit), read through
/// the guest's own page tables. Cold path: allocation is fine here.
/// </summary>
public static class CrashReport
{
    public static string Build(string headline, int vcpuId, in KvmRegs r, in KvmSregs s, GuestMemory memory,
        ReadOnlySpan<byte> instructionBytesFromKvm = default)
    {
        var sb = new StringBuilder();
        sb.Append("csvmm: ").Append(headline).Append(" on vCPU ").Append(vcpuId).AppendLine();
        int bitness = Bitness(s);
        sb.AppendLine($"  mode: {ModeName(s, bitness)}");
        sb.AppendLine($"  rip={r.rip:x16} rflags={r.rflags:x8} rsp={r.rsp:x16} rbp={r.rbp:x16}");
        sb.AppendLine($"  rax={r.rax:x16} rbx={r.rbx:x16} rcx={r.rcx:x16} rdx={r.rdx:x16}");
        sb.AppendLine($"  rsi={r.rsi:x16} rdi={r.rdi:x16} r8 ={r.r8:x16} r9 ={r.r9:x16}");
        sb.AppendLine($"  r10={r.r10:x16} r11={r.r11:x16} r12={r.r12:x16} r13={r.r13:x16}");
        sb.AppendLine($"  r14={r.r14:x16} r15={r.r15:x16}");
        sb.AppendLine($"  cr0={s.cr0:x8} cr2={s.cr2:x16} cr3={s.cr3:x16} cr4={s.cr4:x8} efer={s.efer:x}");
        Seg(sb, "cs", s.cs); Seg(sb, "ss", s.ss); Seg(sb, "ds", s.ds); Seg(sb, "es", s.es);
        Seg(sb, "fs", s.fs); Seg(sb, "gs", s.gs); Seg(sb, "tr", s.tr);
        sb.AppendLine($"  gdt={s.gdt.@base:x}/{s.gdt.limit:x} idt={s.idt.@base:x}/{s.idt.limit:x}");

        ulong linear = bitness == 64 ? r.rip : s.cs.@base + (bitness == 16 ? r.rip & 0xFFFF : r.rip & 0xFFFF_FFFF);
        byte[] code = new byte[32];
        int got = ReadLinear(memory, s, linear, code);
        if (got == 0 && !instructionBytesFromKvm.IsEmpty)
        {
            got = Math.Min(code.Length, instructionBytesFromKvm.Length);
            instructionBytesFromKvm[..got].CopyTo(code);
        }
        if (got == 0)
        {
            sb.AppendLine($"  code at {linear:x}: not readable (outside guest RAM or not mapped)");
        }
        else
        {
            sb.AppendLine($"  code at linear {linear:x} ({bitness}-bit):");
            Disassemble(sb, code.AsSpan(0, got), bitness, bitness == 16 ? r.rip & 0xFFFF : r.rip, 6);
        }
        return sb.ToString();
    }

    /// <summary>Disassembles up to <paramref name="max"/> instructions; marks the first one (at RIP).</summary>
    public static void Disassemble(StringBuilder sb, ReadOnlySpan<byte> code, int bitness, ulong ip, int max)
    {
        var decoder = Iced.Intel.Decoder.Create(bitness, new ByteArrayCodeReader(code.ToArray()), ip);
        var formatter = new NasmFormatter();
        formatter.Options.FirstOperandCharIndex = 8;
        var output = new StringOutput();
        ulong end = ip + (ulong)code.Length;
        for (int n = 0; n < max && decoder.IP < end; n++)
        {
            decoder.Decode(out var instr);
            formatter.Format(instr, output);
            int start = (int)(instr.IP - ip);
            string hex = Convert.ToHexString(code.Slice(start, Math.Min(instr.Length, code.Length - start))).ToLowerInvariant();
            sb.Append(n == 0 ? "  => " : "     ").Append(instr.IP.ToString("x")).Append(": ")
              .Append(hex.PadRight(24)).Append(output.ToStringAndReset()).AppendLine();
            if (instr.IsInvalid) break;
        }
    }

    public static int Bitness(in KvmSregs s)
    {
        if ((s.cr0 & 1) == 0) return 16;
        if ((s.efer & 0x400) != 0 && s.cs.l != 0) return 64;
        return s.cs.db != 0 ? 32 : 16;
    }

    private static string ModeName(in KvmSregs s, int bitness) =>
        (s.cr0 & 1) == 0 ? "real mode" :
        bitness == 64 ? "64-bit long mode" :
        (s.efer & 0x400) != 0 ? $"compatibility mode ({bitness}-bit)" :
        $"{bitness}-bit protected mode{((s.cr0 & 0x8000_0000) != 0 ? ", paging" : "")}";

    private static void Seg(StringBuilder sb, string name, in KvmSegment g) =>
        sb.AppendLine($"  {name}={g.selector:x4} base={g.@base:x} limit={g.limit:x} type={g.type} p={g.present} dpl={g.dpl} db={g.db} s={g.s} l={g.l} g={g.g}");

    /// <summary>Reads guest-linear memory through the guest's page tables (none, 32-bit, PAE or 4-level). Returns bytes read.</summary>
    public static int ReadLinear(GuestMemory memory, in KvmSregs s, ulong linear, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            ulong la = linear + (ulong)done;
            if (!Translate(memory, s, la, out ulong pa)) break;
            int inPage = (int)Math.Min((ulong)(destination.Length - done), 0x1000 - (pa & 0xFFF));
            if (!memory.TryGetSpan(new GuestAddress(pa), inPage, out var span)) break;
            span.CopyTo(destination.Slice(done));
            done += inPage;
        }
        return done;
    }

    public static bool Translate(GuestMemory memory, in KvmSregs s, ulong la, out ulong pa)
    {
        pa = la;
        if ((s.cr0 & 0x8000_0000) == 0) { pa = la & 0xFFFF_FFFF; return true; }
        bool pae = (s.cr4 & 0x20) != 0;
        bool lma = (s.efer & 0x400) != 0;
        const ulong AddrMask = 0x000F_FFFF_FFFF_F000;
        if (lma)
        {
            ulong table = s.cr3 & AddrMask;
            for (int level = 3; level >= 0; level--)
            {
                ulong idx = (la >> (12 + 9 * level)) & 0x1FF;
                if (!TryRead64(memory, table + idx * 8, out ulong e) || (e & 1) == 0) return false;
                if (level > 0 && level < 3 && (e & 0x80) != 0)
                {
                    ulong pageMask = (1UL << (12 + 9 * level)) - 1;
                    pa = (e & AddrMask & ~pageMask) | (la & pageMask);
                    return true;
                }
                table = e & AddrMask;
            }
            pa = table | (la & 0xFFF);
            return true;
        }
        if (pae)
        {
            if (!TryRead64(memory, (s.cr3 & 0xFFFF_FFE0) + ((la >> 30) & 3) * 8, out ulong pdpte) || (pdpte & 1) == 0) return false;
            if (!TryRead64(memory, (pdpte & AddrMask) + ((la >> 21) & 0x1FF) * 8, out ulong pde) || (pde & 1) == 0) return false;
            if ((pde & 0x80) != 0) { pa = (pde & AddrMask & ~0x1F_FFFFUL) | (la & 0x1F_FFFF); return true; }
            if (!TryRead64(memory, (pde & AddrMask) + ((la >> 12) & 0x1FF) * 8, out ulong pte) || (pte & 1) == 0) return false;
            pa = (pte & AddrMask) | (la & 0xFFF);
            return true;
        }
        if (!TryRead32(memory, (s.cr3 & 0xFFFF_F000) + ((la >> 22) & 0x3FF) * 4, out uint pde32) || (pde32 & 1) == 0) return false;
        if ((pde32 & 0x80) != 0 && (s.cr4 & 0x10) != 0) { pa = (pde32 & 0xFFC0_0000u) | (la & 0x3F_FFFF); return true; }
        if (!TryRead32(memory, (pde32 & 0xFFFF_F000u) + ((la >> 12) & 0x3FF) * 4, out uint pte32) || (pte32 & 1) == 0) return false;
        pa = (pte32 & 0xFFFF_F000u) | (la & 0xFFF);
        return true;
    }

    private static bool TryRead64(GuestMemory m, ulong pa, out ulong value)
    {
        value = 0;
        if (!m.TryGetSpan(new GuestAddress(pa), 8, out var span)) return false;
        value = BitConverter.ToUInt64(span);
        return true;
    }

    private static bool TryRead32(GuestMemory m, ulong pa, out uint value)
    {
        value = 0;
        if (!m.TryGetSpan(new GuestAddress(pa), 4, out var span)) return false;
        value = BitConverter.ToUInt32(span);
        return true;
    }
}
