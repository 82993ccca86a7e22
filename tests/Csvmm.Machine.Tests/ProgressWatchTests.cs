using Csvmm.Emulation;
using Csvmm.Kvm;
using Csvmm.Machine.Emulation;
using Iced.Intel;

namespace Csvmm.Machine.Tests;

/// <summary><see cref="ProgressWatch"/>: what counts as the same emulation again with nothing in between.</summary>
public sealed class ProgressWatchTests
{
    private static readonly EmulationOutcome IretdDone = EmulationOutcome.Done(Mnemonic.Iretd);

    private static KvmRegs At(ulong rip, ulong rax = 0) => new() { rip = rip, rax = rax, rflags = 2, rsp = 0x9000 };

    [Fact]
    public void TheSameEmulationBackToBackCountsUp()
    {
        var watch = new ProgressWatch();
        for (int i = 1; i <= 5; i++)
            Assert.Equal(i, watch.Record(At(0x8ffc), IretdDone, exits: 100 + i));
    }

    [Fact]
    public void AnotherExitInBetweenIsProgress()
    {
        var watch = new ProgressWatch();
        watch.Record(At(0x8ffc), IretdDone, exits: 10);
        watch.Record(At(0x8ffc), IretdDone, exits: 11);
        Assert.Equal(1, watch.Record(At(0x8ffc), IretdDone, exits: 13));  // a port write happened at exit 12
        Assert.Equal(2, watch.Record(At(0x8ffc), IretdDone, exits: 14));
    }

    [Fact]
    public void ChangedRegistersAreProgress()
    {
        var watch = new ProgressWatch();
        watch.Record(At(0x8ffc, rax: 1), IretdDone, exits: 10);
        Assert.Equal(1, watch.Record(At(0x8ffc, rax: 2), IretdDone, exits: 11));
        Assert.Equal(2, watch.Record(At(0x8ffc, rax: 2), IretdDone, exits: 12));
        var moved = At(0x8ffc, rax: 2);
        moved.r15 = 1;
        Assert.Equal(1, watch.Record(moved, IretdDone, exits: 13));
    }

    [Fact]
    public void AnotherRipOrOutcomeIsProgress()
    {
        var watch = new ProgressWatch();
        watch.Record(At(0x8ffc), IretdDone, exits: 10);
        Assert.Equal(1, watch.Record(At(0x9000), IretdDone, exits: 11));
        Assert.Equal(1, watch.Record(At(0x9000), EmulationOutcome.Raise(Mnemonic.Iretd, GuestFault.Gp(0x20)), exits: 12));
        Assert.Equal(2, watch.Record(At(0x9000), EmulationOutcome.Raise(Mnemonic.Iretd, GuestFault.Gp(0x20)), exits: 13));
    }
}
