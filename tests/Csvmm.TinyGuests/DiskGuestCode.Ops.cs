using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

internal sealed partial class DiskGuestCode
{
    private const ulong PatternMultiplier = 0x9E37_79B9_7F4A_7C15;
    private const ulong Poison = 0xDEAD_BEEF_DEAD_BEEF;

    /// <summary>The operation interpreter, the device-independent request functions, the pattern and the benchmarks.</summary>
    private void EmitOps()
    {
        var a = _a;

        // diskRw(edi = 0 read / 1 write, rsi = lba, edx = sectors, r8 = buffer) → eax = 0 or error; diskFlush → eax.
        Define(ref _diskRw);
        a.mov(eax, __dword_ptr[rbp + VIface]);
        a.cmp(eax, (int)DiskInterface.Virtio);
        a.je(_virtioRw);
        a.cmp(eax, (int)DiskInterface.IdePio);
        a.je(_idePioRw);
        a.jmp(_ideDmaRw);
        Define(ref _diskFlush);
        a.cmp(__dword_ptr[rbp + VIface], (int)DiskInterface.Virtio);
        a.je(_virtioFlush);
        a.jmp(_ideFlush);

        // patternFill(rdi = buffer, rsi = disk byte address, ecx = qwords, rdx = seed) / patternCheck (same) →
        // rax = -1 when the buffer matches, else the disk byte address of the first qword that does not.
        // qword(A) = v ^ (v >> 32) with v = (A ^ seed) × 0x9E3779B97F4A7C15: DiskPattern.Qword on the host.
        Define(ref _patternFill);
        {
            var loop = a.CreateLabel();
            a.mov(r8, PatternMultiplier);
            a.Label(ref loop);
            EmitPatternQword();
            a.mov(__qword_ptr[rdi], rax);
            a.add(rdi, 8);
            a.add(rsi, 8);
            a.dec(ecx);
            a.jnz(loop);
            a.ret();
        }
        Define(ref _patternCheck);
        {
            var loop = a.CreateLabel();
            var bad = a.CreateLabel();
            a.mov(r8, PatternMultiplier);
            a.Label(ref loop);
            EmitPatternQword();
            a.cmp(__qword_ptr[rdi], rax);
            a.jne(bad);
            a.add(rdi, 8);
            a.add(rsi, 8);
            a.dec(ecx);
            a.jnz(loop);
            a.mov(rax, -1);
            a.ret();
            a.Label(ref bad);
            a.mov(rax, rsi);
            a.ret();
        }

        // genLba → rax: sequential (BNext, advancing by BReqSect) or xorshift64 over BRange request-aligned slots.
        Define(ref _genLba);
        {
            var rand = a.CreateLabel();
            a.cmp(__dword_ptr[rbp + BRand], 0);
            a.jne(rand);
            a.mov(rax, __qword_ptr[rbp + BNext]);
            a.mov(rdx, __qword_ptr[rbp + BReqSect]);
            a.add(__qword_ptr[rbp + BNext], rdx);
            a.ret();
            a.Label(ref rand);
            a.mov(rax, __qword_ptr[rbp + BRng]);
            foreach (var (left, n) in new[] { (true, 13), (false, 7), (true, 17) })
            {
                a.mov(rdx, rax);
                if (left) a.shl(rdx, (byte)n); else a.shr(rdx, (byte)n);
                a.xor(rax, rdx);
            }
            a.mov(__qword_ptr[rbp + BRng], rax);
            a.xor(edx, edx);
            a.div(__qword_ptr[rbp + BRange]);
            a.mov(rax, rdx);
            a.imul(rax, __qword_ptr[rbp + BReqSect]);
            a.ret();
        }

        // benchSync: one request at a time (IDE, or anything without a queue) → eax = 0 or error.
        Define(ref _benchSync);
        {
            var done = a.CreateLabel();
            a.cmp(__qword_ptr[rbp + BToSubmit], 0);
            a.je(done);
            a.call(_genLba);
            a.xor(edi, edi);
            a.mov(rsi, rax);
            a.mov(edx, __dword_ptr[rbp + BReqSect]);
            a.mov(r8d, L.DataBuffer);
            a.call(_diskRw);
            a.test(eax, eax);
            a.jnz(a.F);
            a.dec(__qword_ptr[rbp + BToSubmit]);
            a.inc(__qword_ptr[rbp + BDone]);
            a.jmp(_benchSync);
            a.Label(ref done);
            a.xor(eax, eax);
            a.AnonymousLabel();
            a.ret();
        }

        // runOps: the operation list. rbx = current entry; r12 = lba, r13 = sectors left, r14 = sectors in this chunk,
        // r15 = kind. Any failure ends the guest from inside (fail never returns).
        Define(ref _runOps);
        {
            var loop = a.CreateLabel();
            var next = a.CreateLabel();
            var done = a.CreateLabel();
            var rw = a.CreateLabel();
            var flush = a.CreateLabel();
            var bench = a.CreateLabel();
            a.push(rbx);
            a.push(r12);
            a.push(r13);
            a.push(r14);
            a.push(r15);
            a.Label(ref loop);
            a.cmp(__dword_ptr[rbp + VOpLeft], 0);
            a.je(done);
            a.mov(rbx, __qword_ptr[rbp + VOpPtr]);
            a.mov(r15d, __dword_ptr[rbx + L.OpKind]);
            a.cmp(r15d, (int)DiskOpKind.Flush);
            a.je(flush);
            a.cmp(r15d, (int)DiskOpKind.WriteExpectFailure);
            a.jbe(rw);
            a.cmp(r15d, (int)DiskOpKind.BenchRandom);
            a.jbe(bench);
            a.mov(eax, r15d);
            FailWith("op-kind");

            a.Label(ref next);
            a.add(__qword_ptr[rbp + VOpPtr], L.OpSize);
            a.dec(__dword_ptr[rbp + VOpLeft]);
            a.jmp(loop);
            a.Label(ref done);
            a.pop(r15);
            a.pop(r14);
            a.pop(r13);
            a.pop(r12);
            a.pop(rbx);
            a.ret();

            a.Label(ref flush);
            a.call(_diskFlush);
            a.test(eax, eax);
            a.jz(a.F);
            FailWith("flush");
            a.AnonymousLabel();
            Print("OK flush\n");
            a.jmp(next);

            EmitReadWriteOp(rw, next);
            EmitBenchOp(bench, next);
        }
    }

    /// <summary>rax = pattern qword for disk address rsi under seed rdx (r8 = multiplier). Clobbers r9.</summary>
    private void EmitPatternQword()
    {
        var a = _a;
        a.mov(rax, rsi);
        a.xor(rax, rdx);
        a.imul(rax, r8);
        a.mov(r9, rax);
        a.shr(r9, 32);
        a.xor(rax, r9);
    }

    /// <summary>ReadVerify, Write and WriteExpectFailure (r15d = kind, rbx = entry), chunk by chunk through the data buffer.</summary>
    private void EmitReadWriteOp(Label start, Label next)
    {
        var a = _a;
        var chunk = a.CreateLabel();
        var read = a.CreateLabel();
        var advance = a.CreateLabel();
        var report = a.CreateLabel();
        var writeFailed = a.CreateLabel();
        a.Label(ref start);
        a.mov(r12, __qword_ptr[rbx + L.OpLba]);
        a.mov(r13, __qword_ptr[rbx + L.OpCount]);
        a.Label(ref chunk);
        a.mov(r14d, __dword_ptr[rbp + VChunk]);
        a.cmp(r14, r13);
        a.cmova(r14, r13);
        a.cmp(r15d, (int)DiskOpKind.ReadVerify);
        a.je(read);

        // write (or expected failure): pattern into the buffer, then out
        a.mov(edi, L.DataBuffer);
        a.mov(rsi, r12);
        a.shl(rsi, 9);
        a.mov(ecx, r14d);
        a.shl(ecx, 6);
        a.mov(rdx, __qword_ptr[rbx + L.OpSeed]);
        a.call(_patternFill);
        a.mov(edi, 1);
        a.mov(rsi, r12);
        a.mov(edx, r14d);
        a.mov(r8d, L.DataBuffer);
        a.call(_diskRw);
        a.cmp(r15d, (int)DiskOpKind.WriteExpectFailure);
        a.je(writeFailed);
        a.test(eax, eax);
        a.jz(advance);
        FailWith("write");

        a.Label(ref writeFailed);
        a.test(eax, eax);
        a.jnz(a.F);
        FailWith("write-succeeded");
        a.AnonymousLabel();
        a.push(rax);
        a.push(rax);
        Print("OK write-failed code=");
        a.pop(rax);
        a.pop(rax);
        a.call(_printHex);
        Print("\n");
        a.jmp(next);

        // read: poison the buffer, read, compare
        a.Label(ref read);
        a.mov(edi, L.DataBuffer);
        a.mov(ecx, r14d);
        a.shl(ecx, 6);
        a.mov(rax, Poison);
        a.rep.stosq();
        a.xor(edi, edi);
        a.mov(rsi, r12);
        a.mov(edx, r14d);
        a.mov(r8d, L.DataBuffer);
        a.call(_diskRw);
        a.test(eax, eax);
        a.jz(a.F);
        FailWith("read");
        a.AnonymousLabel();
        a.mov(edi, L.DataBuffer);
        a.mov(rsi, r12);
        a.shl(rsi, 9);
        a.mov(ecx, r14d);
        a.shl(ecx, 6);
        a.mov(rdx, __qword_ptr[rbx + L.OpSeed]);
        a.call(_patternCheck);
        a.cmp(rax, -1);
        a.je(advance);
        FailWith("verify");

        a.Label(ref advance);
        a.add(r12, r14);
        a.sub(r13, r14);
        a.jnz(chunk);
        a.Label(ref report);
        var isWrite = a.CreateLabel();
        a.cmp(r15d, (int)DiskOpKind.ReadVerify);
        a.jne(isWrite);
        Print("OK read");
        a.jmp(a.F);
        a.Label(ref isWrite);
        Print("OK write");
        a.AnonymousLabel();
        PrintDecMem(" lba=", __qword_ptr[rbx + L.OpLba]);
        PrintDecMem(" sectors=", __qword_ptr[rbx + L.OpCount]);
        Print("\n");
        a.jmp(next);
    }

    /// <summary>BenchSequential / BenchRandom (r15d = kind, rbx = entry): BENCH markers around the request loop.</summary>
    private void EmitBenchOp(Label start, Label next)
    {
        var a = _a;
        var isRand = a.CreateLabel();
        var started = a.CreateLabel();
        var sync = a.CreateLabel();
        var ran = a.CreateLabel();
        a.Label(ref start);
        a.xor(eax, eax);
        a.cmp(r15d, (int)DiskOpKind.BenchRandom);
        a.sete(al);
        a.mov(__dword_ptr[rbp + BRand], eax);
        a.movzx(eax, __word_ptr[rbx + L.OpRequestSectors]);
        a.mov(__qword_ptr[rbp + BReqSect], rax);
        a.movzx(eax, __word_ptr[rbx + L.OpQueueDepth]);
        a.mov(ecx, 1);
        a.cmp(__dword_ptr[rbp + VIface], (int)DiskInterface.Virtio);
        a.jne(a.F);
        a.mov(ecx, __dword_ptr[rbp + VMaxQd]);
        a.AnonymousLabel();
        a.cmp(eax, ecx);
        a.cmova(eax, ecx);
        a.mov(__dword_ptr[rbp + BQd], eax);
        a.mov(rax, __qword_ptr[rbx + L.OpCount]);
        a.mov(__qword_ptr[rbp + BToSubmit], rax);
        a.mov(__qword_ptr[rbp + BInFlight], 0);
        a.mov(__qword_ptr[rbp + BDone], 0);
        a.mov(rax, __qword_ptr[rbx + L.OpLba]);
        a.mov(__qword_ptr[rbp + BNext], rax);
        a.mov(rax, __qword_ptr[rbx + L.OpSeed]);
        a.mov(__qword_ptr[rbp + BRng], rax);
        a.cmp(__dword_ptr[rbp + BRand], 0);
        a.jne(isRand);
        Print("BENCH seq-start\n");
        a.jmp(started);

        a.Label(ref isRand);
        a.mov(rax, __qword_ptr[rbx + L.OpLba]);    // range in sectors, 0 = whole disk
        a.test(rax, rax);
        a.jnz(a.F);
        a.mov(rax, __qword_ptr[rbp + VSectors]);
        a.AnonymousLabel();
        a.xor(edx, edx);
        a.div(__qword_ptr[rbp + BReqSect]);
        a.mov(__qword_ptr[rbp + BRange], rax);
        a.test(rax, rax);
        a.jnz(a.F);
        FailWith("bench-range");
        a.AnonymousLabel();
        Print("BENCH rand-start\n");

        a.Label(ref started);
        a.cmp(__dword_ptr[rbp + VIface], (int)DiskInterface.Virtio);
        a.jne(sync);
        a.call(_benchVirtio);
        a.jmp(ran);
        a.Label(ref sync);
        a.call(_benchSync);
        a.Label(ref ran);
        a.test(eax, eax);
        a.jz(a.F);
        FailWith("bench");
        a.AnonymousLabel();
        var randDone = a.CreateLabel();
        var printed = a.CreateLabel();
        a.cmp(__dword_ptr[rbp + BRand], 0);
        a.jne(randDone);
        PrintDecMem("BENCH seq-done ", __qword_ptr[rbp + BDone]);
        a.jmp(printed);
        a.Label(ref randDone);
        PrintDecMem("BENCH rand-done ", __qword_ptr[rbp + BDone]);
        a.Label(ref printed);
        Print("\n");
        a.jmp(next);
    }
}
