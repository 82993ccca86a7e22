using Csvmm.TinyGuests;
using System.Diagnostics;
using Csvmm.Machine.Migration;
using Serilog;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// Live migration between two machines over a unix socket with real guests: the source runs, pre-copies while the
/// guest writes RAM, stops and copies; the destination must go on from the next value. The RAM-writing guest checks
/// its own pages every round, so a page the migration lost or sent stale makes it print "BAD".
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class MigrationGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-migguest-").FullName;
    private static readonly ILogger Log = new LoggerConfiguration().CreateLogger();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed record Outcome(List<uint> Before, List<uint> After, string SourceSerial, string DestinationSerial, MigrationProgress Progress,
        string SourceStatus);

    private async Task<Outcome> Migrate(byte[] guest, ulong memory, int numbersBefore)
    {
        TinyGuest.RequireKvm();
        string firmware = Path.Combine(_dir, "guest.fd"), socketPath = Path.Combine(_dir, "mig.sock");
        File.WriteAllBytes(firmware, guest);
        var config = new MachineConfig { Firmware = firmware, MemoryBytes = memory, Cpus = 1, NoReboot = true, Timeout = TimeSpan.FromSeconds(180) };
        var uri = MigrationUri.TryParse("unix:" + socketPath, out _)!;

        // The destination: listens, builds the machine from the spec the source sends, then runs it.
        var listener = uri.Listen();
        var serial2 = new CollectingSerial();
        MachineRunner? runner2 = null;
        var destination = Task.Run(() =>
        {
            var socket = uri.Accept(listener, TimeSpan.FromSeconds(60));
            using var receiver = MigrationReceiver.Start(new System.Net.Sockets.NetworkStream(socket, ownsSocket: true), uri.Text);
            Assert.Equal(config.Spec, receiver.Spec);
            runner2 = new MachineRunner(MachineConfig.For(receiver.Spec), Log, serial2, receiver);
            return runner2.Run();
        });

        var serial1 = new CollectingSerial();
        var runner1 = new MachineRunner(config, Log, serial1);
        var run1 = Task.Run(runner1.Run);
        var clock = Stopwatch.StartNew();
        while (CountingGuests.Numbers(serial1.Text).Count < numbersBefore && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
        Assert.True(CountingGuests.Numbers(serial1.Text).Count >= numbersBefore, $"the guest did not count: \"{serial1.Text}\"");

        var done = new TaskCompletionSource();
        Assert.Null(runner1.StartMigration(uri, TimeSpan.FromSeconds(10), p => { if (p.Finished) done.TrySetResult(); }));
        await done.Task.WaitAsync(TimeSpan.FromSeconds(120));
        var progress = runner1.LiveMigration!;
        if (progress.Status != "completed")
        {
            string why = "";
            try { await destination.WaitAsync(TimeSpan.FromSeconds(10)); }
            catch (Exception e) { why = $"; the destination: {e.GetType().Name}: {e.Message}"; }
            Assert.Fail($"migration {progress.Status}: {progress.Error}{why}");
        }
        string sourceStatus = runner1.Status;
        string sourceSerial = serial1.Text;
        Thread.Sleep(200);
        Assert.Equal(sourceSerial, serial1.Text); // the source is stopped for good
        runner1.RequestStop(new VmOutcome(VmExitKind.UserQuit, "test"));
        await run1.WaitAsync(TimeSpan.FromSeconds(30));

        clock.Restart();
        while (CountingGuests.Numbers(serial2.Text).Count < 5 && !serial2.Text.Contains("BAD") && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
        runner2?.RequestStop(new VmOutcome(VmExitKind.UserQuit, "test"));
        await destination.WaitAsync(TimeSpan.FromSeconds(30));
        return new Outcome(CountingGuests.Numbers(sourceSerial), CountingGuests.Numbers(serial2.Text), sourceSerial, serial2.Text, progress, sourceStatus);
    }

    private static void AssertContinues(Outcome o)
    {
        Assert.DoesNotContain("BAD", o.DestinationSerial);
        Assert.True(o.After.Count >= 5, $"the migrated guest did not count on: \"{o.DestinationSerial}\"");
        // One guest, two machines: what the source printed followed by what the destination printed is one count, every
        // number once and in order (a line cut by the stop is finished by the destination).
        var all = CountingGuests.Numbers(o.SourceSerial + o.DestinationSerial);
        Assert.Equal(Enumerable.Range(0, all.Count).Select(i => all[0] + (uint)i), all);
        Assert.True(all.Count >= o.Before.Count + o.After.Count, "lines were lost");
        Assert.Equal("postmigrate", o.SourceStatus);
    }

    [Fact]
    public async Task A_guest_writing_its_RAM_moves_to_another_machine_and_finds_every_page_as_it_left_it()
    {
        // 256 pages (1 MiB) rewritten page by page all the time while the migration copies.
        var o = await Migrate(CountingGuests.RamWriter(256), 32UL << 20, numbersBefore: 3);
        var p = o.Progress;
        AssertContinues(o);
        Assert.True(p.DirtySyncCount >= 2, $"{p.DirtySyncCount} dirty-log rounds");
        Assert.True(p.ZeroPages > 0, "zero pages were sent");           // most of the 32 MiB was never written
        Assert.True(p.TransferredBytes < 32L << 20, $"{p.TransferredBytes} bytes sent for a 32 MiB guest that uses 1");
        Assert.True(p.TransferredBytes >= 1L << 20, $"{p.TransferredBytes} bytes sent; the guest writes 1 MiB");
        Assert.True(p.FinalPages > 0, "nothing was left to copy while stopped, yet the guest never stops writing");
        Assert.False(p.FullFinalCopy, "the guest runs in 64-bit mode: KVM's dirty log covers it");
        Assert.InRange(p.DowntimeMs, 0, 10_000);
    }

    [Fact]
    public async Task A_real_mode_guest_moves_too_and_on_this_host_its_RAM_is_copied_whole_while_stopped()
    {
        var o = await Migrate(CountingGuests.RealModeCounter(), 16UL << 20, numbersBefore: 5);
        AssertContinues(o);
        // kvm_pvm emulates real mode and logs none of its writes: the stop-and-copy must send all of RAM.
        Assert.Equal(HostKvmQuirks.DirtyLogMissesEmulatedModes, o.Progress.FullFinalCopy);
    }
}
