using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// A 64-bit ring-0 guest that runs instructions kvm_pvm's emulator gives up on and prints each result in hex. Where KVM
/// cannot run them csvmm's emulator carries them out; on hardware KVM they run natively. The printed text is the same.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class EmulatedInstructionGuestTests
{
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

        string emulated = string.Join(", ", run.Machines.SelectMany(m => m.Vcpus).SelectMany(v => v.Emulator.Counts()).Select(c => $"{c.Name} {c.Count}"));
        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, $"{run.Describe()}\nemulated by csvmm: {emulated}");
        Assert.Equal(string.Join("", new ulong[] { 8, 0x40, 3, 0xF0F0, 0x4433, 1 }.Select(v => $"{v:x16}\n")), run.Serial);
        if (Directory.Exists("/sys/module/kvm_pvm"))
            Assert.True(run.Machines.Sum(m => m.Vcpus.Sum(v => v.Emulator.Total)) >= 6, "the emulator did not run on kvm_pvm");
    }
}
