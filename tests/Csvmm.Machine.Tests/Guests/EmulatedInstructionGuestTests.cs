using Csvmm.TinyGuests;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// A 64-bit ring-0 guest that runs instructions kvm_pvm's emulator gives up on and prints each result in hex. Where KVM
/// cannot run them csvmm's emulator carries them out; on hardware KVM they run natively. The printed text is the same.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class EmulatedInstructionGuestTests
{
    /// <summary>What csvmm emulated in the run, by kind ("popcnt 2, andn 1").</summary>
    private static string Emulated(GuestRun run) =>
        string.Join(", ", run.Machines.SelectMany(m => m.Vcpus).SelectMany(v => v.Emulator.Counts()).Select(c => $"{c.Name} {c.Count}"));

    /// <summary>Prints RAX as 16 hex digits and a newline (clobbers RAX, RBX, RCX, RDX).</summary>
    private static void PrintRax(Iced.Intel.Assembler a)
    {
        var digit = a.CreateLabel();
        var number = a.CreateLabel();
        a.mov(rcx, rax);
        a.mov(r8d, 16);
        a.Label(ref digit);
        a.rol(rcx, 4);
        a.mov(ebx, ecx);
        a.and(ebx, 0xF);
        a.add(ebx, '0');
        a.cmp(ebx, '9');
        a.jbe(number);
        a.add(ebx, 'a' - '9' - 1);
        a.Label(ref number);
        GuestCode.PutBl(a);
        a.dec(r8d);
        a.jnz(digit);
        GuestCode.PutChar(a, '\n');
    }

    [Fact]
    public void EmulatedInstructionsPrintWhatHardwareWould()
    {
        var (image, _) = GuestCode.LongModeGuest(a =>
        {
            a.mov(edi, GuestCode.Buffer);
            a.mov(__qword_ptr[rdi], 0xF0F0);
            a.popcnt(rax, __qword_ptr[rdi]);               // 8
            PrintRax(a);
            a.xor(ebx, ebx);
            a.popcnt(rax, rbx);                             // 0, ZF set, the other status flags clear
            a.pushfq();
            a.pop(rax);
            a.and(eax, 0x8D5);                              // CF PF AF ZF SF OF
            PrintRax(a);                                    // 0x40
            // No lzcnt here: kvm_pvm's own emulator executes F3 0F BD as bsr (the prefix ignored) without an exit, so the
            // guest gets bsr's result and csvmm never sees it (its lzcnt is proven in Csvmm.Emulation.Tests).
            a.mov(ebx, 8);
            a.tzcnt(rax, rbx);                              // 3
            PrintRax(a);
            a.mov(ebx, 0x0F0F);
            a.mov(ecx, 0xFFFF);
            a.andn(eax, ebx, ecx);                          // 0xf0f0
            PrintRax(a);
            // No movbe either: kvm_pvm's emulator raises #UD for it at CPL0 whatever the vCPU's CPUID says (also with
            // KVM_GET_EMULATED_CPUID's movbe bit set), before csvmm could see it.
            // cmpxchg16b: memory 1:2 equals RDX:RAX 2:1 → stores RCX:RBX; then reads it back through a failing compare.
            a.mov(__qword_ptr[rdi + 16], 1);
            a.mov(__qword_ptr[rdi + 24], 2);
            a.mov(eax, 1);
            a.mov(edx, 2);
            a.mov(ebx, 0x33);
            a.mov(ecx, 0x44);
            a.@lock.cmpxchg16b(__oword_ptr[rdi + 16]);
            a.xor(eax, eax);
            a.xor(edx, edx);
            a.@lock.cmpxchg16b(__oword_ptr[rdi + 16]);      // fails: RDX:RAX = 0x44:0x33
            a.shl(rdx, 8);
            a.or(rax, rdx);                                 // 0x4433
            PrintRax(a);
            a.stac();
            a.pushfq();
            a.clac();
            a.pop(rax);
            a.shr(eax, 18);
            a.and(eax, 1);                                  // AC was set: 1
            PrintRax(a);
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build(), timeout: TimeSpan.FromSeconds(60));

        string emulated = Emulated(run);
        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, $"{run.Describe()}\nemulated by csvmm: {emulated}");
        Assert.Equal(string.Join("", new ulong[] { 8, 0x40, 3, 0xF0F0, 0x4433, 1 }.Select(v => $"{v:x16}\n")), run.Serial);
        if (Directory.Exists("/sys/module/kvm_pvm"))
        {
            Assert.True(run.Machines.Sum(m => m.Vcpus.Sum(v => v.Emulator.Total)) >= 6, "the emulator did not run on kvm_pvm");
            // After the first emulation of a burst KVM copies the registers out (KVM_CAP_SYNC_REGS, which kvm_pvm has):
            // the following ones read them from kvm_run, and the printed results above prove they were right.
            Assert.True(run.Machines.Sum(m => m.Vcpus.Sum(v => v.EmulationsWithSyncedRegisters)) >= 4, $"synced: {emulated}");
        }
    }

    private const uint Idt = GuestCode.Buffer + 0x1000, IdtPointer = GuestCode.Buffer + 0x2000;

    /// <summary>Writes a present DPL-0 64-bit interrupt gate for <paramref name="vector"/> to the handler in RAX.</summary>
    private static void Gate(Iced.Intel.Assembler a, byte vector)
    {
        a.mov(edi, Idt + vector * 16u);
        a.mov(rdx, rax);
        a.mov(__word_ptr[rdi], dx);
        a.mov(__word_ptr[rdi + 2], GuestCode.Code64Selector);
        a.mov(__word_ptr[rdi + 4], 0x8E00);
        a.shr(rdx, 16);
        a.mov(__word_ptr[rdi + 6], dx);
        a.mov(__dword_ptr[rdi + 8], 0);
        a.mov(__dword_ptr[rdi + 12], 0);
    }

    [Fact]
    public void SoftwareInterruptsReachTheirHandlersAndReturnPastTheInstruction()
    {
        // int3 and int n at CPL0 in long mode: kvm_pvm cannot deliver them (emulation failure); csvmm injects them with
        // RIP past the instruction. The handler counts in R12 and records each return address; iretq goes back.
        var (image, _) = GuestCode.LongModeGuest(a =>
        {
            var handler = a.CreateLabel();
            var afterInt3 = a.CreateLabel();
            var afterInt80 = a.CreateLabel();
            var start = a.CreateLabel();
            a.jmp(start);
            a.Label(ref handler);
            a.inc(r12);
            a.mov(rax, __qword_ptr[rsp]);                   // the pushed RIP
            a.mov(__qword_ptr[r13], rax);
            a.add(r13, 8);
            a.iretq();
            a.Label(ref start);
            a.lea(rax, __[handler]);
            Gate(a, 3);
            a.lea(rax, __[handler]);
            Gate(a, 0x80);
            a.mov(edi, IdtPointer);
            a.mov(__word_ptr[rdi], 0x80 * 16 + 15);
            a.mov(__qword_ptr[rdi + 2], (int)Idt);
            a.lidt(__[rdi]);
            a.xor(r12d, r12d);
            a.mov(r13d, GuestCode.Buffer + 0x3000);
            a.int3();
            a.Label(ref afterInt3);
            a.@int(0x80);
            a.Label(ref afterInt80);
            a.mov(rax, r12);
            PrintRax(a);                                     // 2 handler calls
            // Each return address is the instruction after the interrupt: print the differences (0 and 0).
            a.lea(rbx, __[afterInt3]);
            a.mov(rax, __qword_ptr[GuestCode.Buffer + 0x3000]);
            a.sub(rax, rbx);
            PrintRax(a);
            a.lea(rbx, __[afterInt80]);
            a.mov(rax, __qword_ptr[GuestCode.Buffer + 0x3008]);
            a.sub(rax, rbx);
            PrintRax(a);
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build(), timeout: TimeSpan.FromSeconds(60));

        string emulated = Emulated(run);
        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, $"{run.Describe()}\nemulated by csvmm: {emulated}");
        Assert.Equal(string.Join("", new ulong[] { 2, 0, 0 }.Select(v => $"{v:x16}\n")), run.Serial);
        if (Directory.Exists("/sys/module/kvm_pvm"))
            Assert.True(run.Machines.Sum(m => m.Vcpus.Sum(v => v.Emulator.Total)) >= 2, $"the emulator did not run on kvm_pvm: {emulated}");
    }

    [Fact]
    public void RdtscpReadsTheTscAndTscAux()
    {
        var (image, _) = GuestCode.LongModeGuest(a =>
        {
            // IA32_TSC_AUX is 0 after reset (a guest cannot set it here: KVM refuses the wrmsr while the vCPU's CPUID,
            // from this host's KVM_GET_SUPPORTED_CPUID, lacks RDTSCP).
            a.mov(ecx, 0x5555);
            a.rdtsc();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(r12, rax);
            a.rdtscp();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(r13, rcx);
            a.sub(rax, r12);                                  // later TSC minus the earlier one: positive, small
            a.mov(ebx, 0);
            a.cmp(rax, 0);
            a.setg(bl);
            a.mov(r14, rbx);
            a.mov(rax, r13);
            PrintRax(a);                                      // 0
            a.mov(rax, r14);
            PrintRax(a);                                      // 1
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build(), timeout: TimeSpan.FromSeconds(60));

        string emulated = Emulated(run);
        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, $"{run.Describe()}\nemulated by csvmm: {emulated}");
        Assert.Equal(string.Join("", new ulong[] { 0, 1 }.Select(v => $"{v:x16}\n")), run.Serial);
        if (Directory.Exists("/sys/module/kvm_pvm")) Assert.Contains("rdtscp 1", emulated);
    }
}
