using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

internal sealed partial class DiskGuestCode
{
    /// <summary>CPL3 main: state, header, PCI, controller init, the DISK line, the operations, PASS and exit.</summary>
    private void EmitMain()
    {
        var a = _a;
        a.cld();
        a.mov(ebp, L.Vars);
        a.mov(rdi, rbp);
        a.xor(eax, eax);
        a.mov(ecx, 0x200);
        a.rep.stosq();

        // Header of the operation block.
        a.mov(esi, L.OpBlock);
        a.mov(eax, __dword_ptr[rsi + L.HdrMagic]);
        a.cmp(eax, unchecked((int)L.Magic));
        var magicOk = a.CreateLabel();
        a.je(magicOk);
        FailWith("header");
        a.Label(ref magicOk);
        foreach (var (from, to) in new[] { (L.HdrInterface, VIface), (L.HdrFlags, VFlags), (L.HdrChunk, VChunk), (L.HdrPioMultiple, VPioMult), (L.HdrOpCount, VOpLeft), (L.HdrPollPauses, VPollPauses) })
        {
            a.mov(eax, __dword_ptr[rsi + from]);
            a.mov(__dword_ptr[rbp + to], eax);
        }
        a.mov(rax, __qword_ptr[rsi + L.HdrTimeout]);
        a.mov(__qword_ptr[rbp + VTimeout], rax);
        a.lea(rax, __[rsi + L.OpHeaderSize]);
        a.mov(__qword_ptr[rbp + VOpPtr], rax);
        a.mov(__dword_ptr[rbp + VMemNext], unchecked((int)L.MmioBarBase));
        a.mov(__dword_ptr[rbp + VIoNext], (int)L.IoBarBase);

        // Find the controller, give it BARs, enable decoding and bus mastering.
        a.call(_pciFind);
        var found = a.CreateLabel();
        a.test(eax, eax);
        a.jnz(found);
        FailWith("no-device");
        a.Label(ref found);
        a.call(_pciAssignBars);
        a.mov(ebx, 0x04);
        a.call(_pciRead16);
        a.or(eax, 0x7);                   // I/O space, memory space, bus master
        a.call(_pciWrite16);

        var ide = a.CreateLabel();
        var initDone = a.CreateLabel();
        a.cmp(__dword_ptr[rbp + VIface], (int)DiskInterface.Virtio);
        a.jne(ide);
        a.call(_virtioInit);
        a.jmp(initDone);
        a.Label(ref ide);
        a.call(_ideInit);
        a.Label(ref initDone);
        var initOk = a.CreateLabel();
        a.test(eax, eax);
        a.jz(initOk);
        FailWith("init");
        a.Label(ref initOk);

        // DISK <kind> vvvv:dddd bb:dd.f sectors=N
        Print("DISK ");
        var k2 = a.CreateLabel();
        var k3 = a.CreateLabel();
        var kDone = a.CreateLabel();
        a.mov(eax, __dword_ptr[rbp + VIface]);
        a.cmp(eax, 2);
        a.je(k2);
        a.cmp(eax, 3);
        a.je(k3);
        Print("virtio ");
        a.jmp(kDone);
        a.Label(ref k2);
        Print("ide-pio ");
        a.jmp(kDone);
        a.Label(ref k3);
        Print("ide-dma ");
        a.Label(ref kDone);
        a.movzx(eax, __word_ptr[rbp + VVenDev]);
        a.mov(ecx, 4);
        a.call(_printHexN);
        a.mov(al, (byte)':');
        a.call(_putc);
        a.movzx(eax, __word_ptr[rbp + VVenDev + 2]);
        a.mov(ecx, 4);
        a.call(_printHexN);
        a.mov(al, (byte)' ');
        a.call(_putc);
        a.mov(eax, __dword_ptr[rbp + VBdf]);
        a.shr(eax, 16);
        a.and(eax, 0xFF);
        a.mov(ecx, 2);
        a.call(_printHexN);
        a.mov(al, (byte)':');
        a.call(_putc);
        a.mov(eax, __dword_ptr[rbp + VBdf]);
        a.shr(eax, 11);
        a.and(eax, 0x1F);
        a.mov(ecx, 2);
        a.call(_printHexN);
        a.mov(al, (byte)'.');
        a.call(_putc);
        a.mov(eax, __dword_ptr[rbp + VBdf]);
        a.shr(eax, 8);
        a.and(eax, 7);
        a.mov(ecx, 1);
        a.call(_printHexN);
        PrintDecMem(" sectors=", __qword_ptr[rbp + VSectors]);
        Print("\n");

        a.call(_runOps);

        Print("PASS\n");
        a.xor(eax, eax);
        a.jmp(_exit);
    }

    private Label _runOps;

    /// <summary>Runtime: serial output, number printing, FAIL and exit, the poll deadline.</summary>
    private void EmitRuntime()
    {
        var a = _a;

        // putc(al): waits for THR empty (LSR bit 5), writes al to COM1. Preserves everything but flags.
        Define(ref _putc);
        {
            var wait = a.CreateLabel();
            a.push(rdx);
            a.push(rax);
            a.mov(dx, 0x3FD);
            a.Label(ref wait);
            a.@in(al, dx);
            a.test(al, 0x20);
            a.jz(wait);
            a.pop(rax);
            a.mov(dx, 0x3F8);
            a.@out(dx, al);
            a.pop(rdx);
            a.ret();
        }

        // printStr(rsi)
        Define(ref _printStr);
        {
            var done = a.CreateLabel();
            a.mov(al, __byte_ptr[rsi]);
            a.test(al, al);
            a.jz(done);
            a.call(_putc);
            a.inc(rsi);
            a.jmp(_printStr);
            a.Label(ref done);
            a.ret();
        }

        // printDec(rax): unsigned decimal.
        Define(ref _printDec);
        {
            var conv = a.CreateLabel();
            var out1 = a.CreateLabel();
            a.mov(rsi, rsp);
            a.sub(rsp, 32);
            a.mov(ecx, 10);
            a.Label(ref conv);
            a.xor(edx, edx);
            a.div(rcx);
            a.add(dl, (byte)'0');
            a.dec(rsi);
            a.mov(__byte_ptr[rsi], dl);
            a.test(rax, rax);
            a.jnz(conv);
            a.lea(rdi, __[rsp + 32]);
            a.Label(ref out1);
            a.mov(al, __byte_ptr[rsi]);
            a.call(_putc);
            a.inc(rsi);
            a.cmp(rsi, rdi);
            a.jb(out1);
            a.add(rsp, 32);
            a.ret();
        }

        // printHex(rax): hex without leading zeros. printHexN(rax, ecx digits): exactly ecx digits.
        Define(ref _printHex);
        {
            var count = a.CreateLabel();
            a.mov(ecx, 1);
            a.mov(rdx, rax);
            a.Label(ref count);
            a.shr(rdx, 4);
            a.jz(_printHexN);
            a.inc(ecx);
            a.jmp(count);
        }
        Define(ref _printHexN);
        {
            var loop = a.CreateLabel();
            var digit = a.CreateLabel();
            a.mov(rdx, rax);
            a.Label(ref loop);
            a.lea(eax, __[rcx * 4 - 4]);
            a.push(rcx);
            a.mov(cl, al);
            a.mov(rax, rdx);
            a.shr(rax, cl);
            a.pop(rcx);
            a.and(eax, 0xF);
            a.add(al, (byte)'0');
            a.cmp(al, (byte)'9');
            a.jbe(digit);
            a.add(al, 'a' - '9' - 1);
            a.Label(ref digit);
            a.call(_putc);
            a.dec(ecx);
            a.jnz(loop);
            a.ret();
        }

        // fail(rsi = what, rax = code): "FAIL what code\n", exit 1.
        Define(ref _fail);
        {
            a.mov(r12, rax);
            a.mov(r13, rsi);
            Print("FAIL ");
            a.mov(rsi, r13);
            a.call(_printStr);
            a.mov(al, (byte)' ');
            a.call(_putc);
            a.mov(rax, r12);
            a.call(_printHex);
            Print("\n");
            a.mov(eax, 1);
        }

        // exit(al): isa-debug-exit (QEMU), then ACPI S5 (csvmm), then hlt (#GP at CPL3: a triple fault ends any VMM).
        Define(ref _exit);
        {
            a.@out(0xF4, al);
            a.mov(dx, 0x604);
            a.mov(ax, (5 << 10) | (1 << 13));
            a.@out(dx, ax);
            a.hlt();
            a.jmp(_exit);
        }

        // timeoutSetup: deadline = TSC + VTimeout. Preserves all registers.
        Define(ref _timeoutSetup);
        {
            a.push(rax);
            a.push(rdx);
            a.rdtsc();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.add(rax, __qword_ptr[rbp + VTimeout]);
            a.mov(__qword_ptr[rbp + VDeadline], rax);
            a.mov(__dword_ptr[rbp + VPollCount], 256);
            a.pop(rdx);
            a.pop(rax);
            a.ret();
        }
    }
}
