using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

internal sealed partial class DiskGuestCode
{
    private const byte AtaBsy = 0x80, AtaDrq = 0x08, AtaErrOrDf = 0x21;

    /// <summary>
    /// PCI IDE at the legacy ports (primary 0x1F0/0x3F6, secondary 0x170/0x376), interrupts off (nIEN), status polled
    /// through the alternate status register. Errors come back as 0x10000 | status &lt;&lt; 8 | error register, or
    /// 0x20000 | BM status &lt;&lt; 8 for a bus-master error.
    /// </summary>
    private void EmitIde()
    {
        var a = _a;

        // ideInit → eax = 0 or an error code. Ports, BM base, IDE decode enable (PIIX IDETIM), IDENTIFY, SET MULTIPLE.
        Define(ref _ideInit);
        {
            var secondary = a.CreateLabel();
            var portsSet = a.CreateLabel();
            var ret = a.CreateLabel();
            var error = a.CreateLabel();
            a.push(rbx);
            a.mov(ebx, 0x40);                 // IDETIM primary / secondary: bit 15 = IDE decode enable
            a.mov(eax, 0x8000);
            a.call(_pciWrite16);
            a.mov(ebx, 0x42);
            a.mov(eax, 0x8000);
            a.call(_pciWrite16);
            a.mov(ebx, 0x20);
            a.call(_pciRead32);
            a.and(eax, 0xFFFC);
            a.test(__dword_ptr[rbp + VFlags], (int)L.FlagSecondary);
            a.jnz(secondary);
            a.mov(__dword_ptr[rbp + VBmBase], eax);
            a.mov(__dword_ptr[rbp + VAtaBase], 0x1F0);
            a.mov(__dword_ptr[rbp + VAtaCtl], 0x3F6);
            a.jmp(portsSet);
            a.Label(ref secondary);
            a.add(eax, 8);
            a.mov(__dword_ptr[rbp + VBmBase], eax);
            a.mov(__dword_ptr[rbp + VAtaBase], 0x170);
            a.mov(__dword_ptr[rbp + VAtaCtl], 0x376);
            a.Label(ref portsSet);
            a.xor(eax, eax);
            a.test(__dword_ptr[rbp + VFlags], (int)L.FlagSlave);
            a.setnz(al);
            a.shl(eax, 4);
            a.mov(__dword_ptr[rbp + VDriveSel], eax);

            a.mov(edx, __dword_ptr[rbp + VAtaCtl]);
            a.mov(al, 0x02);                  // nIEN
            a.@out(dx, al);
            // select the drive, IDENTIFY DEVICE
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 6);
            a.mov(eax, __dword_ptr[rbp + VDriveSel]);
            a.or(al, 0xA0);
            a.@out(dx, al);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.mov(al, 0xEC);
            a.@out(dx, al);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf);
            a.jnz(error);
            a.test(al, AtaDrq);
            a.jz(error);
            a.sub(edx, 7);
            a.mov(edi, L.IdentifyBuffer);
            a.mov(ecx, 256);
            a.rep.insw();
            // capacity: LBA48 (word 83 bit 10) → words 100-103, else words 60-61
            var lba28 = a.CreateLabel();
            var capDone = a.CreateLabel();
            a.test(__word_ptr[(ulong)(L.IdentifyBuffer + 83 * 2)], 1 << 10);
            a.jz(lba28);
            a.mov(__dword_ptr[rbp + VLba48], 1);
            a.mov(rax, __qword_ptr[(ulong)(L.IdentifyBuffer + 100 * 2)]);
            a.jmp(capDone);
            a.Label(ref lba28);
            a.mov(eax, __dword_ptr[(ulong)(L.IdentifyBuffer + 60 * 2)]);
            a.Label(ref capDone);
            a.mov(__qword_ptr[rbp + VSectors], rax);

            // SET MULTIPLE MODE when asked
            var noMult = a.CreateLabel();
            a.mov(eax, __dword_ptr[rbp + VPioMult]);
            a.test(eax, eax);
            a.jz(noMult);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 2);
            a.@out(dx, al);
            a.add(edx, 5);
            a.mov(al, 0xC6);
            a.@out(dx, al);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf);
            a.jnz(error);
            a.Label(ref noMult);
            a.xor(eax, eax);
            a.Label(ref ret);
            a.pop(rbx);
            a.ret();
            a.Label(ref error);
            a.call(_ataError);
            a.jmp(ret);
        }

        // ideWaitReady → eax = alternate status once BSY is clear, or -1 on timeout. Clobbers edx.
        Define(ref _ideWaitReady);
        {
            var loop = a.CreateLabel();
            var timeout = a.CreateLabel();
            TimeoutStart();
            a.mov(edx, __dword_ptr[rbp + VAtaCtl]);
            a.Label(ref loop);
            a.@in(al, dx);
            a.test(al, AtaBsy);
            a.jz(a.F);
            TimeoutCheck(timeout);
            a.jmp(loop);
            a.AnonymousLabel();
            a.movzx(eax, al);
            a.ret();
            a.Label(ref timeout);
            a.mov(eax, -1);
            a.ret();
        }

        // ideIssue(rsi = lba, edx = count 1..65536, ecx = LBA28 command, r9d = LBA48 command) → eax = 0 or error.
        // LBA48 when forced, or when the range needs it (end beyond 2^28 or more than 256 sectors).
        Define(ref _ideIssue);
        {
            var use48 = a.CreateLabel();
            var ret = a.CreateLabel();
            a.mov(__qword_ptr[rbp + TLba], rsi);
            a.mov(__qword_ptr[rbp + TCount], rdx);
            a.mov(__dword_ptr[rbp + TCmd28], ecx);
            a.mov(__dword_ptr[rbp + TCmd48], r9d);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            var ready = a.CreateLabel();
            a.jne(ready);
            a.mov(eax, ErrTimeout);
            a.ret();
            a.Label(ref ready);
            a.mov(rax, __qword_ptr[rbp + TLba]);
            a.add(rax, __qword_ptr[rbp + TCount]);
            a.cmp(rax, 0x0FFF_FFFF);
            a.ja(use48);
            a.cmp(__qword_ptr[rbp + TCount], 256);
            a.ja(use48);
            a.test(__dword_ptr[rbp + VFlags], (int)L.FlagForceLba48);
            a.jnz(use48);

            // LBA28
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 6);
            a.mov(rax, __qword_ptr[rbp + TLba]);
            a.shr(rax, 24);
            a.and(eax, 0x0F);
            a.or(eax, __dword_ptr[rbp + VDriveSel]);
            a.or(al, 0xE0);
            a.@out(dx, al);
            a.sub(edx, 5);
            a.xor(eax, eax);
            a.@out(dx, al);                   // features
            a.inc(edx);
            a.mov(rax, __qword_ptr[rbp + TCount]);
            a.@out(dx, al);                   // count (256 → 0)
            a.mov(rax, __qword_ptr[rbp + TLba]);
            for (int i = 0; i < 3; i++)
            {
                a.inc(edx);
                a.@out(dx, al);
                a.shr(rax, 8);
            }
            a.add(edx, 2);
            a.mov(eax, __dword_ptr[rbp + TCmd28]);
            a.@out(dx, al);
            a.xor(eax, eax);
            a.ret();

            // LBA48: previous (high) bytes first, then the current ones
            a.Label(ref use48);
            a.cmp(__dword_ptr[rbp + VLba48], 0);
            var has48 = a.CreateLabel();
            a.jne(has48);
            a.mov(eax, ErrNoLba48);
            a.ret();
            a.Label(ref has48);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 6);
            a.mov(eax, __dword_ptr[rbp + VDriveSel]);
            a.or(al, 0xE0);
            a.@out(dx, al);
            a.sub(edx, 5);
            a.xor(eax, eax);
            a.@out(dx, al);                   // features (high)
            a.@out(dx, al);                   // features (low)
            a.inc(edx);
            a.mov(rax, __qword_ptr[rbp + TCount]);
            a.shr(eax, 8);
            a.@out(dx, al);                   // count high (65536 → 0)
            a.mov(rax, __qword_ptr[rbp + TLba]);
            a.shr(rax, 24);
            for (int i = 0; i < 3; i++)
            {
                a.inc(edx);
                a.@out(dx, al);
                a.shr(rax, 8);
            }
            a.sub(edx, 3);
            a.mov(rax, __qword_ptr[rbp + TCount]);
            a.@out(dx, al);                   // count low
            a.mov(rax, __qword_ptr[rbp + TLba]);
            for (int i = 0; i < 3; i++)
            {
                a.inc(edx);
                a.@out(dx, al);
                a.shr(rax, 8);
            }
            a.add(edx, 2);
            a.mov(eax, __dword_ptr[rbp + TCmd48]);
            a.@out(dx, al);
            a.xor(eax, eax);
            a.Label(ref ret);
            a.ret();
        }

        // idePioRw(edi = 0 read / 1 write, rsi = lba, edx = sectors, r8 = buffer) → eax = 0 or error.
        Define(ref _idePioRw);
        {
            var write = a.CreateLabel();
            var cmdSet = a.CreateLabel();
            var block = a.CreateLabel();
            var blockWrite = a.CreateLabel();
            var blockDone = a.CreateLabel();
            var error = a.CreateLabel();
            var ret = a.CreateLabel();
            var single = a.CreateLabel();
            a.push(r12);
            a.push(r13);
            a.push(r14);
            a.push(r15);
            a.mov(r12d, edx);                 // sectors left
            a.mov(r13, r8);                   // buffer
            a.mov(r14d, edi);                 // direction
            a.mov(r15d, __dword_ptr[rbp + VPioMult]);
            a.test(r15d, r15d);
            a.jz(single);
            a.mov(ecx, 0xC4);                 // READ MULTIPLE
            a.mov(r9d, 0x29);                 // READ MULTIPLE EXT
            a.test(edi, edi);
            a.jz(cmdSet);
            a.mov(ecx, 0xC5);                 // WRITE MULTIPLE
            a.mov(r9d, 0x39);
            a.jmp(cmdSet);
            a.Label(ref single);
            a.mov(r15d, 1);
            a.mov(ecx, 0x20);                 // READ SECTORS
            a.mov(r9d, 0x24);
            a.test(edi, edi);
            a.jz(cmdSet);
            a.mov(ecx, 0x30);                 // WRITE SECTORS
            a.mov(r9d, 0x34);
            a.Label(ref cmdSet);
            a.call(_ideIssue);
            a.test(eax, eax);
            a.jnz(ret);
            a.Label(ref block);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf);
            a.jnz(error);
            a.test(al, AtaDrq);
            a.jz(error);
            a.sub(edx, 7);
            a.mov(ecx, r15d);
            a.cmp(ecx, r12d);
            a.cmova(ecx, r12d);
            a.sub(r12d, ecx);
            a.shl(ecx, 8);                    // words
            a.test(r14d, r14d);
            a.jnz(blockWrite);
            a.mov(rdi, r13);
            a.rep.insw();
            a.mov(r13, rdi);
            a.jmp(blockDone);
            a.Label(ref blockWrite);
            a.mov(rsi, r13);
            a.rep.outsw();
            a.mov(r13, rsi);
            a.Label(ref blockDone);
            a.test(r12d, r12d);
            a.jnz(block);
            // end of command: BSY clear, no error, no more data
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf | AtaDrq);
            a.jnz(error);
            a.xor(eax, eax);
            a.jmp(ret);
            a.Label(ref error);
            a.call(_ataError);
            a.Label(ref ret);
            a.pop(r15);
            a.pop(r14);
            a.pop(r13);
            a.pop(r12);
            a.ret();
        }

        // ideDmaRw(edi = 0 read / 1 write, rsi = lba, edx = sectors, r8 = buffer) → eax = 0 or error.
        // PRD entries of at most 64 KiB (the buffer is 64 KiB aligned, so none crosses a 64 KiB boundary).
        Define(ref _ideDmaRw);
        {
            var prd = a.CreateLabel();
            var full = a.CreateLabel();
            var error = a.CreateLabel();
            var bmError = a.CreateLabel();
            var ret = a.CreateLabel();
            var poll = a.CreateLabel();
            var timeout = a.CreateLabel();
            var write = a.CreateLabel();
            var cmdSet = a.CreateLabel();
            a.push(r12);
            a.push(r13);
            a.mov(r12d, edi);
            a.mov(r13d, 0x08);                // BM command direction: device → memory
            a.test(edi, edi);
            a.jz(a.F);
            a.xor(r13d, r13d);
            a.AnonymousLabel();
            // PRD table
            a.mov(eax, edx);
            a.shl(rax, 9);                    // bytes left
            a.mov(r10d, L.PrdTable);
            a.Label(ref prd);
            a.mov(__dword_ptr[r10], r8d);
            a.mov(ecx, 0x10000);
            a.cmp(rax, rcx);
            a.cmovb(ecx, eax);
            a.mov(__dword_ptr[r10 + 4], ecx); // byte count (65536 → 0 in the low 16 bits), flags 0
            a.and(__dword_ptr[r10 + 4], 0xFFFF);
            a.add(r8, rcx);
            a.add(r10, 8);
            a.sub(rax, rcx);
            a.jnz(prd);
            a.or(__dword_ptr[r10 - 4], unchecked((int)0x8000_0000));   // EOT
            // bus master: stop, clear interrupt/error, table address, direction
            a.push(rsi);
            a.push(rdx);
            a.mov(edx, __dword_ptr[rbp + VBmBase]);
            a.xor(eax, eax);
            a.@out(dx, al);
            a.add(edx, 2);
            a.@in(al, dx);
            a.or(al, 0x06);
            a.@out(dx, al);
            a.add(edx, 2);
            a.mov(eax, L.PrdTable);
            a.@out(dx, eax);
            a.sub(edx, 4);
            a.mov(eax, r13d);
            a.@out(dx, al);
            a.pop(rdx);
            a.pop(rsi);
            a.mov(ecx, 0xC8);                 // READ DMA
            a.mov(r9d, 0x25);                 // READ DMA EXT
            a.test(r12d, r12d);
            a.jz(cmdSet);
            a.mov(ecx, 0xCA);                 // WRITE DMA
            a.mov(r9d, 0x35);                 // WRITE DMA EXT
            a.Label(ref cmdSet);
            a.call(_ideIssue);
            a.test(eax, eax);
            a.jnz(ret);
            a.mov(edx, __dword_ptr[rbp + VBmBase]);
            a.mov(eax, r13d);
            a.or(al, 1);                      // start
            a.@out(dx, al);
            // poll BM status until not active (or error)
            a.add(edx, 2);
            TimeoutStart();
            a.Label(ref poll);
            a.@in(al, dx);
            a.test(al, 0x01);
            a.jz(a.F);
            a.test(al, 0x02);
            a.jnz(a.F);
            TimeoutCheck(timeout);
            a.mov(ecx, __dword_ptr[rbp + VPollPauses]);
            a.test(ecx, ecx);
            a.jz(poll);
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.pause();
            a.dec(ecx);
            a.jnz(spin);
            a.jmp(poll);
            a.AnonymousLabel();
            a.movzx(eax, al);
            a.mov(__dword_ptr[rbp + TBmStatus], eax);
            a.sub(edx, 2);
            a.mov(eax, r13d);
            a.@out(dx, al);                   // stop
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf | AtaDrq);
            a.jnz(error);
            a.test(__dword_ptr[rbp + TBmStatus], 0x02);
            a.jnz(bmError);
            a.xor(eax, eax);
            a.jmp(ret);
            a.Label(ref timeout);
            a.mov(edx, __dword_ptr[rbp + VBmBase]);
            a.mov(eax, r13d);
            a.@out(dx, al);                   // stop
            a.mov(eax, ErrTimeout);
            a.jmp(ret);
            a.Label(ref bmError);
            a.mov(eax, __dword_ptr[rbp + TBmStatus]);
            a.shl(eax, 8);
            a.or(eax, 0x20000);
            a.jmp(ret);
            a.Label(ref error);
            a.call(_ataError);
            a.Label(ref ret);
            a.pop(r13);
            a.pop(r12);
            a.ret();
        }

        // ideFlush → eax = 0 or error: FLUSH CACHE (EXT when LBA48 is forced).
        Define(ref _ideFlush);
        {
            var error = a.CreateLabel();
            a.xor(esi, esi);
            a.mov(edx, 1);
            a.mov(ecx, 0xE7);
            a.mov(r9d, 0xEA);
            a.call(_ideIssue);
            a.test(eax, eax);
            a.jnz(a.F);
            a.call(_ideWaitReady);
            a.cmp(eax, -1);
            a.je(error);
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);
            a.test(al, AtaErrOrDf);
            a.jnz(error);
            a.xor(eax, eax);
            a.AnonymousLabel();
            a.ret();
            a.Label(ref error);
            a.call(_ataError);
            a.ret();
        }

        // _ataError(eax = status or -1) → eax = 0x10000 | status << 8 | error register, or ErrTimeout.
        a.Label(ref _ataError);
        {
            a.cmp(eax, -1);
            a.jne(a.F);
            a.mov(eax, ErrTimeout);
            a.ret();
            a.AnonymousLabel();
            a.mov(edx, __dword_ptr[rbp + VAtaBase]);
            a.add(edx, 7);
            a.@in(al, dx);                    // status (clears a pending interrupt)
            a.movzx(ecx, al);
            a.shl(ecx, 8);
            a.sub(edx, 6);
            a.@in(al, dx);                    // error register
            a.movzx(eax, al);
            a.or(eax, ecx);
            a.or(eax, 0x10000);
            a.ret();
        }
    }

    private Label _ataError;
}
