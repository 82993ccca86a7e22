using Csvmm.Emulation;
using Csvmm.Kvm;
using Csvmm.Machine.Emulation;
using Csvmm.Memory;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests;

/// <summary>What connects the emulator to KVM and guest RAM, tested without KVM.</summary>
public sealed unsafe class EmulationPlumbingTests : IDisposable
{
    private readonly GuestMemory _memory = new();

    public EmulationPlumbingTests()
    {
        _memory.AddRegion(GuestAddress.Zero, 0x10_0000, "ram");
        _memory.AddRegion(new GuestAddress(0xF_0000_0000), 0x1000, "rom", readOnly: true);
    }

    public void Dispose() => _memory.Dispose();

    [Fact]
    public void The_cmpxchg16b_stub_is_exactly_the_listed_instructions()
    {
        var a = new Assembler(64);
        a.push(rbx);
        a.mov(r8, rdx);
        a.mov(rax, __qword_ptr[rsi]);
        a.mov(rdx, __qword_ptr[rsi + 8]);
        a.mov(rbx, __qword_ptr[r8]);
        a.mov(rcx, __qword_ptr[r8 + 8]);
        a.@lock.cmpxchg16b(__oword_ptr[rdi]);
        a.mov(__qword_ptr[rsi], rax);
        a.mov(__qword_ptr[rsi + 8], rdx);
        a.sete(al);
        a.movzx(eax, al);
        a.pop(rbx);
        a.ret();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), 0);
        Assert.Equal(stream.ToArray(), HostAtomics.Cmpxchg16bStubForTests.ToArray());
    }

    [Fact]
    public void Guest_ram_compare_exchange_is_atomic_under_contention()
    {
        var at = new GuestAddress(0x1000);
        const int PerThread = 100_000;
        void Increment()
        {
            for (int i = 0; i < PerThread; i++)
            {
                UInt128 seen = 0;
                while (true)
                {
                    Assert.True(_memory.TryCompareExchange128(at, seen, seen + 1, out UInt128 previous));
                    if (previous == seen) break;
                    seen = previous;
                }
            }
        }
        var threads = new[] { new Thread(Increment), new Thread(Increment) };
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Span<byte> bytes = _memory.GetSpan(at, 16);
        Assert.Equal((UInt128)(2 * PerThread), System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(bytes));
    }

    [Fact]
    public void Compare_exchange_refuses_rom_misalignment_and_holes()
    {
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0xF_0000_0000), 0, 1, out _));
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0x1008), 0, 1, out _));
        Assert.False(_memory.TryCompareExchange128(new GuestAddress(0x20_0000), 0, 1, out _));
        var ram = new EmulatedRam(_memory);
        Assert.False(ram.TryWrite(0xF_0000_0000, [1]));   // ROM: the emulator never writes it
        Assert.True(ram.TryRead(0xF_0000_0000, new byte[4]));
        Assert.False(ram.TryRead(0xF_FFFF_0000, new byte[1]));
    }

    [Fact]
    public void Kvm_state_round_trips_through_the_emulators_view()
    {
        var regs = new KvmRegs { rax = 1, rbx = 2, rcx = 3, rdx = 4, rsi = 5, rdi = 6, rsp = 7, rbp = 8, r8 = 9, r15 = 16, rip = 0x1234, rflags = 0x246 };
        var sregs = new KvmSregs
        {
            cs = new KvmSegment { selector = 0x10, @base = 0, limit = 0xFFFF_FFFF, type = 0xB, present = 1, s = 1, l = 1, g = 1 },
            ss = new KvmSegment { selector = 0x18, limit = 0xFFFF_FFFF, type = 3, present = 1, s = 1, db = 1, g = 1, dpl = 0 },
            cr0 = 0x8000_0011, cr3 = 0x1000, cr4 = 0x20, efer = 0x500,
        };
        var cpu = new CpuState();
        KvmCpuState.Load(cpu, regs, sregs);
        Assert.Equal(CpuMode.Long64, cpu.Mode);
        Assert.Equal((1UL, 3UL, 4UL, 2UL, 7UL, 8UL, 5UL, 6UL), (cpu.Gpr[0], cpu.Gpr[1], cpu.Gpr[2], cpu.Gpr[3], cpu.Gpr[4], cpu.Gpr[5], cpu.Gpr[6], cpu.Gpr[7]));
        Assert.Equal(16UL, cpu.Gpr[15]);
        KvmRegs back = default;
        KvmSregs sback = sregs;
        KvmCpuState.Store(cpu, ref back, ref sback);
        Assert.Equal(regs, back);
        Assert.Equal(sregs.cs, sback.cs);
        Assert.Equal(sregs.ss, sback.ss);
    }

    [Fact]
    public void Faults_become_exceptions_and_software_interrupts_become_interrupts()
    {
        var events = new KvmVcpuEvents { nmi_pending = 1 };
        KvmCpuState.Inject(ref events, EmulationOutcome.Raise(Mnemonic.Cmpxchg16b, GuestFault.Gp(0x10)));
        Assert.Equal((1, 13, 1, 0x10u), (events.exception_injected, events.exception_nr, events.exception_has_error_code, events.exception_error_code));
        Assert.Equal(1, events.nmi_pending); // untouched

        events = default;
        KvmCpuState.Inject(ref events, EmulationOutcome.Raise(Mnemonic.Xgetbv, GuestFault.Ud));
        Assert.Equal((1, 6, 0), (events.exception_injected, events.exception_nr, events.exception_has_error_code));

        events = default;
        KvmCpuState.Inject(ref events, EmulationOutcome.Interrupt(Mnemonic.Int3, 3));
        Assert.Equal((1, 3, 0), (events.interrupt_injected, events.interrupt_nr, events.interrupt_soft));
        Assert.Equal(0, events.exception_injected);
    }
}
