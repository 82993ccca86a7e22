using Csvmm.TinyGuests;
using System.Text.RegularExpressions;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>A guest that triple-faults: the machine stops with a crash report that points at the culprit.</summary>
[Collection(KvmGuests.Name)]
public sealed class CrashGuestTests
{
    [Fact]
    public void UndefinedOpcodeWithAnEmptyIdtTripleFaultsAndIsReported()
    {
        var culprit = default(Iced.Intel.Label);
        var (image, body) = GuestCode.LongModeGuest(a =>
        {
            GuestCode.PutChar(a, 'X');
            a.mov(ebx, GuestCode.ZeroIdtPointer);
            a.lidt(__[rbx]);                       // IDT limit 0: no vector can be delivered
            culprit = a.CreateLabel();
            a.Label(ref culprit);
            a.ud2();                               // #UD → #GP → #DF → shutdown
            GuestCode.HaltForever(a);
        });

        GuestRun run = TinyGuest.Run(image.Build());

        Assert.True(run.Outcome.Kind == VmExitKind.Crashed, run.Describe());
        Assert.Equal("X", run.Serial);
        Assert.Contains("triple fault", run.Outcome.Reason, StringComparison.Ordinal);
        string report = Assert.IsType<string>(run.Outcome.Report);
        ulong rip = body.LabelIp(culprit);
        Assert.Contains("triple fault", report, StringComparison.Ordinal);
        Assert.Contains("64-bit long mode", report, StringComparison.Ordinal);
        Assert.Contains($"rip={rip:x16}", report, StringComparison.Ordinal);
        Assert.Contains("rax=", report, StringComparison.Ordinal);
        Assert.Contains("cr3=0000000000010000", report, StringComparison.Ordinal);
        Assert.Matches(new Regex($@"=> {rip:x}: 0f0b\s+ud2\b"), report);
    }

    [Fact]
    public void AnEmulatedInstructionsFaultIsDeliveredAndAnEmptyIdtStillCrashesTheGuest()
    {
        // xgetbv with CR4.OSXSAVE clear raises #UD. Hardware KVM raises it itself; where kvm_pvm cannot emulate xgetbv,
        // csvmm's emulator decides the same #UD and injects it. Either way the empty IDT turns it into a triple fault
        // (or, on kvm_pvm, an emulation failure while delivering it), reported at the xgetbv.
        var culprit = default(Iced.Intel.Label);
        var (image, body) = GuestCode.LongModeGuest(a =>
        {
            a.mov(ebx, GuestCode.ZeroIdtPointer);
            a.lidt(__[rbx]);
            a.xor(ecx, ecx);
            culprit = a.CreateLabel();
            a.Label(ref culprit);
            a.xgetbv();
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build());

        Assert.True(run.Outcome.Kind == VmExitKind.Crashed, run.Describe());
        Assert.Matches("triple fault|emulation failure", run.Outcome.Reason);
        string report = Assert.IsType<string>(run.Outcome.Report);
        ulong rip = body.LabelIp(culprit);
        Assert.Contains($"rip={rip:x16}", report, StringComparison.Ordinal);
        Assert.Matches(new Regex($@"=> {rip:x}: 0f01d0\s+xgetbv"), report);
    }

    [Fact]
    public void AnInstructionCsvmmDoesNotEmulateStopsTheMachineWithTheReason()
    {
        // xsave: kvm_pvm cannot emulate it and neither does csvmm; hardware KVM runs it (CR4.OSXSAVE clear: #UD, then the
        // empty IDT triple-faults). Either way the machine stops with a report at the instruction.
        var culprit = default(Iced.Intel.Label);
        var (image, body) = GuestCode.LongModeGuest(a =>
        {
            a.mov(ebx, GuestCode.ZeroIdtPointer);
            a.lidt(__[rbx]);
            a.mov(edi, GuestCode.Buffer);
            culprit = a.CreateLabel();
            a.Label(ref culprit);
            a.xsave(__[rdi]);
            GuestCode.PowerOff(a);
        });

        GuestRun run = TinyGuest.Run(image.Build());

        Assert.True(run.Outcome.Kind == VmExitKind.Crashed, run.Describe());
        if (Directory.Exists("/sys/module/kvm_pvm"))
            Assert.Contains("csvmm did not emulate it", run.Outcome.Reason, StringComparison.Ordinal);
        string report = Assert.IsType<string>(run.Outcome.Report);
        Assert.Contains($"rip={body.LabelIp(culprit):x16}", report, StringComparison.Ordinal);
    }
}
