using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

internal sealed partial class DiskGuestCode
{
    /// <summary>
    /// PCI configuration mechanism #1 on the function in VBdf (0x8000_0000 | bus &lt;&lt; 16 | dev &lt;&lt; 11 | fn &lt;&lt; 8), the
    /// search for the controller, and BAR assignment.
    /// </summary>
    private void EmitPci()
    {
        var a = _a;

        // pciRead32(ebx = offset) → eax. Clobbers edx.
        Define(ref _pciRead32);
        a.mov(eax, ebx);
        a.and(eax, 0xFC);
        a.or(eax, __dword_ptr[rbp + VBdf]);
        a.mov(dx, 0xCF8);
        a.@out(dx, eax);
        a.mov(dx, 0xCFC);
        a.@in(eax, dx);
        a.ret();

        // pciWrite32(ebx = offset, eax = value). Clobbers ecx, edx.
        Define(ref _pciWrite32);
        a.mov(ecx, eax);
        a.mov(eax, ebx);
        a.and(eax, 0xFC);
        a.or(eax, __dword_ptr[rbp + VBdf]);
        a.mov(dx, 0xCF8);
        a.@out(dx, eax);
        a.mov(dx, 0xCFC);
        a.mov(eax, ecx);
        a.@out(dx, eax);
        a.ret();

        // pciRead8 / pciRead16(ebx = offset) → eax (zero-extended). Clobbers ecx, edx.
        Define(ref _pciRead8);
        a.call(_pciRead32);
        a.mov(ecx, ebx);
        a.and(ecx, 3);
        a.shl(ecx, 3);
        a.shr(eax, cl);
        a.and(eax, 0xFF);
        a.ret();
        Define(ref _pciRead16);
        a.call(_pciRead32);
        a.mov(ecx, ebx);
        a.and(ecx, 2);
        a.shl(ecx, 3);
        a.shr(eax, cl);
        a.and(eax, 0xFFFF);
        a.ret();

        // pciWrite16(ebx = offset, ax = value): a 16-bit access at 0xCFC + (offset & 2). Clobbers ecx, edx.
        Define(ref _pciWrite16);
        a.mov(ecx, eax);
        a.mov(eax, ebx);
        a.and(eax, 0xFC);
        a.or(eax, __dword_ptr[rbp + VBdf]);
        a.mov(dx, 0xCF8);
        a.@out(dx, eax);
        a.mov(edx, ebx);
        a.and(edx, 2);
        a.add(edx, 0xCFC);
        a.mov(eax, ecx);
        a.@out(dx, ax);
        a.ret();

        // pciFind → eax = 1 and VBdf/VVenDev set when a function on bus 0 matches VIface.
        //   virtio: 1af4:1042 (modern) or 1af4:1001 (transitional; the capabilities are checked by virtioInit).
        //   IDE: class 01 subclass 01.
        Define(ref _pciFind);
        {
            var next = a.CreateLabel();
            var check = a.CreateLabel();
            var ideCheck = a.CreateLabel();
            var match = a.CreateLabel();
            var none = a.CreateLabel();
            a.push(rbx);
            a.push(r12);
            a.mov(r12d, 0x8000_0000);
            a.Label(ref check);
            a.mov(__dword_ptr[rbp + VBdf], r12d);
            a.xor(ebx, ebx);
            a.call(_pciRead32);
            a.cmp(ax, 0xFFFF);
            a.je(next);
            a.mov(__dword_ptr[rbp + VVenDev], eax);
            a.cmp(__dword_ptr[rbp + VIface], (int)DiskInterface.Virtio);
            a.jne(ideCheck);
            a.cmp(eax, 0x1042_1AF4);
            a.je(match);
            a.cmp(eax, 0x1001_1AF4);
            a.je(match);
            a.jmp(next);
            a.Label(ref ideCheck);
            a.mov(ebx, 0x08);
            a.call(_pciRead32);
            a.shr(eax, 16);
            a.cmp(eax, 0x0101);
            a.je(match);
            a.Label(ref next);
            a.add(r12d, 0x100);
            a.cmp(r12d, 0x8001_0000);
            a.jb(check);
            a.Label(ref none);
            a.xor(eax, eax);
            a.pop(r12);
            a.pop(rbx);
            a.ret();
            a.Label(ref match);
            a.mov(eax, 1);
            a.pop(r12);
            a.pop(rbx);
            a.ret();
        }

        // pciAssignBars: with decoding off, sizes every BAR the firmware left at 0 and places it (memory BARs from
        // VMemNext, I/O BARs from VIoNext, each aligned to its size); BARs that are already set are kept.
        Define(ref _pciAssignBars);
        {
            var loop = a.CreateLabel();
            var next = a.CreateLabel();
            var mem = a.CreateLabel();
            var memPlace = a.CreateLabel();
            var mem32 = a.CreateLabel();
            var restoreNext = a.CreateLabel();
            var done = a.CreateLabel();
            a.push(rbx);
            a.push(r12);
            a.push(r13);
            a.push(r14);
            a.mov(ebx, 0x04);
            a.call(_pciRead16);
            a.and(eax, ~7);
            a.call(_pciWrite16);              // decoding off while BARs read as masks
            a.mov(r12d, 0x10);                // BAR offset
            a.Label(ref loop);
            a.cmp(r12d, 0x24);
            a.ja(done);
            a.mov(ebx, r12d);
            a.call(_pciRead32);
            a.mov(r13d, eax);                 // original value
            a.test(eax, 1);
            a.jz(mem);

            // I/O BAR
            a.test(eax, ~3);
            a.jnz(next);
            a.mov(eax, -1);
            a.call(_pciWrite32);
            a.call(_pciRead32);
            a.and(eax, 0xFFFC);
            a.jz(restoreNext);                // not implemented
            a.neg(eax);
            a.and(eax, 0xFFFF);               // size
            a.mov(r14d, eax);
            a.mov(ecx, __dword_ptr[rbp + VIoNext]);
            a.lea(ecx, __[rcx + rax - 1]);
            a.neg(eax);
            a.and(ecx, eax);                  // aligned base
            a.lea(eax, __[rcx + r14]);
            a.mov(__dword_ptr[rbp + VIoNext], eax);
            a.mov(eax, ecx);
            a.call(_pciWrite32);
            a.jmp(next);

            // memory BAR (32- or 64-bit)
            a.Label(ref mem);
            a.mov(eax, r13d);
            a.and(eax, 6);
            a.cmp(eax, 4);
            a.jne(mem32);
            // 64-bit: kept if either half is set; the upper half is BAR + 4
            a.lea(ebx, __[r12 + 4]);
            a.call(_pciRead32);
            a.mov(ebx, r12d);
            a.test(eax, eax);
            a.jnz(memPlace);                  // jumps with eax != 0: keep (handled below)
            a.Label(ref mem32);
            a.mov(eax, r13d);
            a.and(eax, ~0xF);
            a.Label(ref memPlace);
            a.test(eax, eax);
            var memSize = a.CreateLabel();
            a.jz(memSize);
            // keep; skip the upper half of a 64-bit BAR
            a.mov(eax, r13d);
            a.and(eax, 6);
            a.cmp(eax, 4);
            a.jne(next);
            a.add(r12d, 4);
            a.jmp(next);
            a.Label(ref memSize);
            a.mov(eax, -1);
            a.call(_pciWrite32);
            a.call(_pciRead32);
            a.and(eax, ~0xF);
            a.jz(restoreNext);
            a.neg(eax);                       // size (32-bit)
            a.mov(r14d, eax);
            a.mov(ecx, __dword_ptr[rbp + VMemNext]);
            a.lea(ecx, __[rcx + rax - 1]);
            a.neg(eax);
            a.and(ecx, eax);
            a.lea(eax, __[rcx + r14]);
            a.mov(__dword_ptr[rbp + VMemNext], eax);
            a.mov(eax, ecx);
            a.call(_pciWrite32);
            a.mov(eax, r13d);
            a.and(eax, 6);
            a.cmp(eax, 4);
            a.jne(next);
            a.add(r12d, 4);                   // upper half: 0
            a.mov(ebx, r12d);
            a.xor(eax, eax);
            a.call(_pciWrite32);
            a.jmp(next);

            a.Label(ref restoreNext);
            a.mov(eax, r13d);
            a.call(_pciWrite32);
            a.Label(ref next);
            a.add(r12d, 4);
            a.jmp(loop);
            a.Label(ref done);
            a.pop(r14);
            a.pop(r13);
            a.pop(r12);
            a.pop(rbx);
            a.ret();
        }

        // barBase(ecx = BAR index) → rax = memory address (0 for an I/O or invalid BAR). Clobbers rcx, rdx, r8.
        Define(ref _barBase);
        {
            var bad = a.CreateLabel();
            var not64 = a.CreateLabel();
            a.push(rbx);
            a.cmp(ecx, 5);
            a.ja(bad);
            a.lea(ebx, __[rcx * 4 + 0x10]);
            a.call(_pciRead32);
            a.test(eax, 1);
            a.jnz(bad);
            a.mov(r8d, eax);
            a.and(r8d, ~0xF);
            a.and(eax, 6);
            a.cmp(eax, 4);
            a.jne(not64);
            a.add(ebx, 4);
            a.call(_pciRead32);
            a.shl(rax, 32);
            a.or(r8, rax);
            a.Label(ref not64);
            a.mov(rax, r8);
            a.pop(rbx);
            a.ret();
            a.Label(ref bad);
            a.xor(eax, eax);
            a.pop(rbx);
            a.ret();
        }
    }
}
