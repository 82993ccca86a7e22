using System.Diagnostics;
using System.Text.RegularExpressions;
using Csvmm.Machine.Snapshot;
using Csvmm.TinyGuests;
using Iced.Intel;
using Serilog;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// Save and restore with a real guest: a real-mode guest counts in RAM and prints each value on COM1; the running
/// machine is saved, stopped, and a new machine restored from the file must print the next value and go on.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class SnapshotGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-snapguest-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_restored_machine_goes_on_counting_from_where_it_was_saved()
    {
        TinyGuest.RequireKvm();
        string firmware = Path.Combine(_dir, "count.fd"), snapshot = Path.Combine(_dir, "vm.snap");
        File.WriteAllBytes(firmware, CountingGuests.RealModeCounter());
        var config = new MachineConfig { Firmware = firmware, MemoryBytes = 16UL << 20, Cpus = 1, NoReboot = true, Timeout = TimeSpan.FromSeconds(120) };
        ILogger log = new LoggerConfiguration().CreateLogger();

        var serial1 = new CollectingSerial();
        var runner1 = new MachineRunner(config, log, serial1);
        var run1 = Task.Run(runner1.Run);
        var deadline = Stopwatch.StartNew();
        while (CountingGuests.Numbers(serial1.Text).Count < 5 && deadline.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
        Assert.True(CountingGuests.Numbers(serial1.Text).Count >= 5, $"the guest did not count: \"{serial1.Text}\"");
        var (ram, downtime) = runner1.SaveSnapshot(snapshot, TimeSpan.FromSeconds(10));
        Assert.Equal(16L << 20, ram);
        Assert.Equal("postmigrate", runner1.Status);
        Thread.Sleep(200);
        string savedSerial = serial1.Text;
        Assert.Equal(savedSerial, serial1.Text);           // stopped: nothing more is printed
        runner1.RequestStop(new VmOutcome(VmExitKind.UserQuit, "test"));
        await run1.WaitAsync(TimeSpan.FromSeconds(30));
        uint last = CountingGuests.Numbers(savedSerial)[^1];

        using var reader = SnapshotReader.Open(snapshot);
        var spec = MachineSnapshot.ReadSpec(reader);
        Assert.Equal(config.Spec, spec);
        var serial2 = new CollectingSerial();
        var runner2 = new MachineRunner(MachineConfig.For(spec), log, serial2, new Csvmm.Machine.Migration.SnapshotIncoming(reader));
        var run2 = Task.Run(runner2.Run);
        deadline.Restart();
        while (CountingGuests.Numbers(serial2.Text).Count < 3 && deadline.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
        runner2.RequestStop(new VmOutcome(VmExitKind.UserQuit, "test"));
        await run2.WaitAsync(TimeSpan.FromSeconds(30));
        var after = CountingGuests.Numbers(serial2.Text);
        Assert.True(after.Count >= 3, $"the restored guest did not count: \"{serial2.Text}\"");
        // The line being printed when the machine stopped may be finished first; then the count goes on from there.
        Assert.InRange(after[0], last, last + 1);
        Assert.Equal(Enumerable.Range(0, after.Count).Select(i => after[0] + (uint)i), after);
        Assert.True(downtime < TimeSpan.FromSeconds(10), $"downtime {downtime}");
    }

}
