using System.Diagnostics;
using System.Numerics;
using Csvmm.Block;
using Csvmm.Machine.Snapshot;
using Csvmm.Memory;
using Serilog;

namespace Csvmm.Machine.Migration;

/// <summary>A migration's progress and outcome, as <c>query-migrate</c> reports it. Updated by the migration thread.</summary>
public sealed class MigrationProgress
{
    private volatile string _status = "setup";
    private volatile bool _finished;

    /// <summary>QEMU's MigrationStatus: setup, active, device (stop-and-copy), completed, failed, cancelled.</summary>
    public string Status
    {
        get => _status;
        internal set
        {
            if (_status == value) return;
            _status = value;
            if (value is not ("completed" or "failed" or "cancelled")) Changed?.Invoke(this);
        }
    }

    /// <summary>Raised on the migration thread when <see cref="Status"/> changes; for the final status only once the
    /// migration is wholly over (the VM resumed after a failure, the thread about to end).</summary>
    public event Action<MigrationProgress>? Changed;

    /// <summary>The migration is over (<see cref="Status"/> is final).</summary>
    public bool Finished => _finished;

    internal void Finish()
    {
        _finished = true;
        Changed?.Invoke(this);
    }
    public long TotalRamBytes { get; internal set; }
    /// <summary>RAM payload sent so far (pages, not zero runs).</summary>
    public long TransferredBytes;
    /// <summary>Pages left out because they were all zero (QEMU's "duplicate").</summary>
    public long ZeroPages;
    /// <summary>Pages sent.</summary>
    public long NormalPages;
    /// <summary>Dirty-log rounds (QEMU's dirty-sync-count).</summary>
    public int DirtySyncCount;
    /// <summary>Dirty pages found by the last round.</summary>
    public long LastDirtyPages;
    /// <summary>Pages sent while the VM was stopped (the stop-and-copy).</summary>
    public long FinalPages;
    public long TotalTimeMs { get; internal set; }
    public long SetupTimeMs { get; internal set; }
    /// <summary>How long the vCPUs were stopped: from the stop to the destination's acceptance.</summary>
    public long DowntimeMs { get; internal set; }
    /// <summary>Whether the stop-and-copy sent all of RAM because KVM's dirty log could not be trusted (see <see cref="VirtualMachine.GuestDirtyLogIsComplete"/>).</summary>
    public bool FullFinalCopy { get; internal set; }
    public string? Error { get; internal set; }
}

/// <summary>
/// The source side of a live migration: pre-copy while the guest runs, then stop-and-copy.
/// <list type="number">
/// <item>Setup: the spec goes first (the destination builds the machine from it); with the vCPUs briefly stopped and
/// the devices quiesced, dirty logging starts (KVM's for the guest's writes, <see cref="DirtyPageLog"/> for the VMM's).</item>
/// <item>Pass 0 sends every non-zero page; later passes send what KVM logged since, until a pass finds few enough pages
/// (or <see cref="MaxPasses"/>).</item>
/// <item>Stop-and-copy: vCPUs stopped, devices quiesced, the last guest-dirty pages plus every page the VMM touched
/// since setup, the device/vCPU/irqchip/PIT/clock state, disks flushed and their locks released, END; the destination
/// answers once it has loaded everything and taken the disks.</item>
/// </list>
/// Any failure before the destination accepts puts the source back as it was (locks retaken, devices and vCPUs
/// resumed if they ran); after it accepts, the source stays stopped (QEMU's postmigrate).
/// </summary>
public sealed class MigrationSender
{
    /// <summary>Pre-copy rounds after pass 0 at most.</summary>
    public const int MaxPasses = 8;
    /// <summary>A round that finds this many dirty pages or fewer goes to stop-and-copy (1 MiB).</summary>
    public const int FinalPages = 256;

    private readonly VirtualMachine _vm;
    private readonly Stream _stream;
    private readonly ILogger _log;
    private readonly Func<bool> _stopVcpus;
    private readonly Action _resumeVcpus;
    private readonly bool _running;
    private readonly CancellationToken _cancel;
    private readonly MigrationWriter _writer;
    private readonly List<(int Slot, uint Index, GuestRegion Region, ulong[] Dirty, ulong[] Scratch)> _ram = [];

    /// <param name="stopVcpus">Stops every vCPU at an exit boundary; false when they did not stop.</param>
    /// <param name="resumeVcpus">Lets them run again.</param>
    /// <param name="running">The VM runs now (a paused VM stays paused until it is back or gone).</param>
    public MigrationSender(VirtualMachine vm, Stream stream, ILogger log, Func<bool> stopVcpus, Action resumeVcpus, bool running, CancellationToken cancel)
    {
        _vm = vm;
        _stream = stream;
        _log = log;
        _stopVcpus = stopVcpus;
        _resumeVcpus = resumeVcpus;
        _running = running;
        _cancel = cancel;
        _writer = new MigrationWriter(stream);
        uint index = 0;
        for (int slot = 0; slot < vm.Memory.Regions.Count; slot++)
        {
            var r = vm.Memory.Regions[slot];
            if (r.ReadOnly) continue; // ROM comes from the firmware file on the other side too
            int words = DirtyPageLog.WordsFor(r.Size);
            _ram.Add((slot, index++, r, new ulong[words], new ulong[words]));
        }
    }

    public MigrationProgress Progress { get; } = new();

    /// <summary>Runs the migration to its end. Throws <see cref="SnapshotException"/> (with the source restored) on failure.</summary>
    public void Run()
    {
        var total = Stopwatch.StartNew();
        Progress.TotalRamBytes = _ram.Sum(r => (long)r.Region.Size);
        bool logging = false, stopped = false, quiesced = false;
        var released = new List<RawDisk>();
        try
        {
            _writer.WriteHeader();
            _writer.WriteSection(RecordKind.Spec, 0, _vm.Config.Spec.Encode());
            _stream.Flush();
            // The destination builds its machine and decides (MAC, disks) first: none of that is downtime.
            if (MigrationWriter.ReadReply(_stream, MigrationFormat.ReplyReady) is { } notReady) throw new SnapshotException(notReady);

            if (!_stopVcpus()) throw new SnapshotException("the vCPUs did not stop");
            stopped = true;
            _vm.Platform.QuiesceDevices();
            _vm.StartDirtyLogging();
            logging = true;
            _vm.Platform.ResumeDevices();
            if (_running) _resumeVcpus();
            stopped = false;
            Progress.SetupTimeMs = total.ElapsedMilliseconds;
            Progress.Status = "active";

            foreach (var r in _ram) Array.Fill(r.Dirty, ulong.MaxValue);
            SendDirty(skipZero: true);
            for (int pass = 1; pass <= MaxPasses; pass++)
            {
                _cancel.ThrowIfCancellationRequested();
                long dirty = CollectGuestDirty();
                if (dirty <= FinalPages) break;
                SendDirty(skipZero: false);
            }

            _cancel.ThrowIfCancellationRequested();
            var down = Stopwatch.StartNew();
            if (!_stopVcpus()) throw new SnapshotException("the vCPUs did not stop");
            stopped = true;
            long tStopped = down.ElapsedTicks;
            Progress.Status = "device";
            _vm.Platform.QuiesceDevices();
            quiesced = true;
            CollectGuestDirty();
            var vmmLog = _vm.Memory.DirtyTracking!;
            Progress.FullFinalCopy = !_vm.GuestDirtyLogIsComplete();
            foreach (var r in _ram)
            {
                if (Progress.FullFinalCopy) Array.Fill(r.Dirty, ulong.MaxValue);
                else vmmLog.OrInto(r.Slot, r.Dirty);
            }
            long before = Progress.NormalPages + Progress.ZeroPages;
            SendDirty(skipZero: false);
            Progress.FinalPages = Progress.NormalPages + Progress.ZeroPages - before;
            long tPages = down.ElapsedTicks;
            foreach (var (kind, index, payload) in MachineSnapshot.CaptureState(_vm))
                _writer.WriteSection((RecordKind)kind, index, payload);
            long tState = down.ElapsedTicks;
            foreach (var d in _vm.Config.AttachedDisks)
            {
                var result = d.Backend.Flush();
                if (result != DiskIoResult.Ok) throw new SnapshotException($"flushing {d.Name} before handing it over: {result}");
                if (d.Backend is RawDisk raw && raw.LockMode is DiskLockMode.Exclusive or DiskLockMode.Shared)
                {
                    raw.ReleaseLock();
                    released.Add(raw);
                }
            }
            _writer.WriteEnd();
            _stream.Flush();
            long tSent = down.ElapsedTicks;
            if (MigrationWriter.ReadReply(_stream) is { } refused) throw new SnapshotException(refused);
            Progress.DowntimeMs = down.ElapsedMilliseconds;
            double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
            _log.Debug("migration downtime: vCPUs stopped {Stop:0.0} ms, last {Pages} pages {PagesMs:0.0} ms, state {State:0.0} ms, disks + END {Sent:0.0} ms, destination's reply {Reply:0.0} ms",
                Ms(tStopped), Progress.FinalPages, Ms(tPages - tStopped), Ms(tState - tPages), Ms(tSent - tState), Ms(down.ElapsedTicks - tSent));
            _vm.StopDirtyLogging();
            logging = false;
            _vm.Platform.ResumeDevices(); // the vCPUs stay stopped; nothing is left for the devices to do
            Progress.TotalTimeMs = total.ElapsedMilliseconds;
            Progress.Status = "completed";
            _log.Information("migration completed: {Sent} MiB sent in {Passes} rounds, {Zero} zero pages skipped, downtime {Down} ms, total {Total} ms{Full}",
                Progress.TransferredBytes >> 20, Progress.DirtySyncCount, Progress.ZeroPages, Progress.DowntimeMs, Progress.TotalTimeMs,
                Progress.FullFinalCopy ? " (all of RAM sent while stopped: a vCPU was outside 64-bit mode, where this KVM logs no writes)" : "");
        }
        catch (Exception e) when (e is SnapshotException or IOException or OperationCanceledException or ObjectDisposedException
            or DiskException or Kvm.KvmException or System.Net.Sockets.SocketException)
        {
            Progress.TotalTimeMs = total.ElapsedMilliseconds;
            Progress.Status = e is OperationCanceledException ? "cancelled" : "failed";
            Progress.Error = e is OperationCanceledException ? "migration cancelled" : e.Message;
            // Put the source back as it was: the disks' locks (the destination did not take them: it refused or is gone),
            // dirty logging off, the devices and vCPUs running again.
            string? relock = null;
            foreach (var d in released)
                try { d.AcquireLock(); }
                catch (DiskException le) { relock ??= le.Message; }
            if (logging) _vm.StopDirtyLogging();
            if (quiesced) _vm.Platform.ResumeDevices();
            if (relock is not null)
                throw new SnapshotException($"{Progress.Error}; the VM stays stopped: {relock}");
            if (stopped && _running) _resumeVcpus();
            if (e is OperationCanceledException) throw new SnapshotException(Progress.Error);
            throw e is SnapshotException ? e : new SnapshotException($"migration failed: {e.Message}");
        }
    }

    /// <summary>KVM's log for every RAM region into the pending bitmaps; returns how many pages are pending.</summary>
    private long CollectGuestDirty()
    {
        long pages = 0;
        foreach (var r in _ram)
        {
            _vm.CollectGuestDirtyPages(r.Slot, r.Dirty, r.Scratch);
            foreach (ulong w in r.Dirty) pages += BitOperations.PopCount(w);
        }
        Progress.DirtySyncCount++;
        Progress.LastDirtyPages = pages;
        return pages;
    }

    /// <summary>Sends every pending page and clears the bitmaps: contiguous non-zero pages as PAGE records, zero ones as
    /// ZERO records (or not at all with <paramref name="skipZero"/>: the destination's RAM starts zeroed).</summary>
    private unsafe void SendDirty(bool skipZero)
    {
        const int Page = MigrationFormat.PageSize;
        foreach (var r in _ram)
        {
            ulong pages = r.Region.Size / Page;
            byte* host = (byte*)r.Region.HostAddress;
            ulong runStart = 0, runLength = 0;   // pending non-zero pages
            ulong zeroStart = 0, zeroLength = 0; // pending zero pages
            for (int w = 0; w < r.Dirty.Length; w++)
            {
                ulong word = r.Dirty[w];
                if (word == 0) continue;
                r.Dirty[w] = 0;
                while (word != 0)
                {
                    int bit = BitOperations.TrailingZeroCount(word);
                    word &= word - 1;
                    ulong page = (ulong)w * 64 + (ulong)bit;
                    if (page >= pages) break;
                    var data = new ReadOnlySpan<byte>(host + page * Page, Page);
                    if (data.IndexOfAnyExcept((byte)0) < 0)
                    {
                        Progress.ZeroPages++;
                        if (skipZero) continue;
                        if (zeroLength > 0 && zeroStart + zeroLength == page) zeroLength++;
                        else
                        {
                            FlushZero(r.Index, zeroStart, zeroLength);
                            zeroStart = page;
                            zeroLength = 1;
                        }
                        continue;
                    }
                    if (runLength > 0 && runStart + runLength == page && runLength < MigrationFormat.MaxPagesPerRecord) runLength++;
                    else
                    {
                        FlushRun(r.Index, host, runStart, runLength);
                        runStart = page;
                        runLength = 1;
                    }
                }
                if ((w & 63) == 63) _cancel.ThrowIfCancellationRequested();
            }
            FlushRun(r.Index, host, runStart, runLength);
            FlushZero(r.Index, zeroStart, zeroLength);
        }
    }

    private unsafe void FlushRun(uint index, byte* host, ulong start, ulong length)
    {
        if (length == 0) return;
        const int Page = MigrationFormat.PageSize;
        _writer.WritePages(index, start * Page, new ReadOnlySpan<byte>(host + start * Page, (int)(length * Page)));
        Interlocked.Add(ref Progress.TransferredBytes, (long)length * Page);
        Progress.NormalPages += (long)length;
    }

    private void FlushZero(uint index, ulong start, ulong length)
    {
        if (length == 0) return;
        _writer.WriteZero(index, start * MigrationFormat.PageSize, length * MigrationFormat.PageSize);
    }
}
