using Csvmm.Control;
using Csvmm.Machine;

namespace Csvmm.Cli;

/// <summary>The running machine as the QMP server sees it: commands go to the runner, and the events QEMU sends for
/// them (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN) go back to the connected client.</summary>
internal sealed class QmpMachine(MachineRunner runner, MachineConfig config) : IQmpMachine
{
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Where events go (the server, once it exists).</summary>
    public QmpServer? Server { get; set; }

    public string Status => runner.Status;

    public bool Pause()
    {
        bool wasRunning = runner.Status == "running";
        bool ok = runner.Pause(PauseTimeout);
        if (ok && wasRunning) Server?.Event("STOP");
        return ok;
    }

    public void Resume()
    {
        bool wasPaused = runner.Status is "paused" or "postmigrate";
        try
        {
            runner.Resume();
        }
        catch (Csvmm.Machine.Snapshot.SnapshotException e)
        {
            throw new QmpException("GenericError", e.Message);
        }
        if (wasPaused) Server?.Event("RESUME");
    }

    public void Reset() => runner.Reset("QMP system_reset");

    public void PowerButton()
    {
        runner.PressPowerButton();
        Server?.Event("POWERDOWN");
    }

    public void Quit() => runner.RequestStop(new VmOutcome(VmExitKind.UserQuit, "QMP quit"));

    public IReadOnlyList<QmpCpu> Cpus => runner.VcpuThreads().Select(t => new QmpCpu(t.Index, t.ThreadId)).ToList();

    public IReadOnlyList<QmpBlock> Block
    {
        get
        {
            var list = new List<QmpBlock>();
            int ide = 0, virtio = 0;
            for (int i = 0; i < config.Disks.Count; i++)
            {
                var d = config.Disks[i];
                long size = i < config.AttachedDisks.Count ? (long)config.AttachedDisks[i].Backend.SizeBytes : 0;
                string device = d.Interface == DiskInterface.Ide ? $"ide{ide / 2}-{ide++ % 2}" : $"virtio{virtio++}";
                list.Add(new QmpBlock(device, d.Path, d.ReadOnly, size, d.Interface == DiskInterface.Ide ? "ide" : "virtio"));
            }
            return list;
        }
    }

    public IReadOnlyList<KeyValuePair<string, long>> Stats() => runner.Stats();

    private QmpMigration? _fileMigration;
    private bool _live;

    public QmpMigration? Migration => _live && runner.LiveMigration is { } p ? Describe(p) : _fileMigration;

    private static QmpMigration Describe(Csvmm.Machine.Migration.MigrationProgress p) =>
        new(p.Status, p.TotalTimeMs, p.DowntimeMs, p.TotalRamBytes, p.Error)
        {
            TransferredBytes = Interlocked.Read(ref p.TransferredBytes), ZeroPages = p.ZeroPages, NormalPages = p.NormalPages,
            DirtySyncCount = p.DirtySyncCount, RemainingPages = p.Finished ? 0 : p.LastDirtyPages, SetupTimeMs = p.SetupTimeMs,
        };

    public void CancelMigration() => runner.CancelMigration();

    /// <summary>
    /// <c>migrate</c>: to <c>file:PATH</c> stop, write the snapshot, stay stopped (QEMU's postmigrate); to <c>unix:PATH</c>
    /// or <c>tcp:HOST:PORT</c> start a live migration to a csvmm started with <c>--incoming</c> there (the command returns
    /// at once; MIGRATION events and query-migrate follow it).
    /// </summary>
    public string? Migrate(string uri)
    {
        if (!uri.StartsWith("file:", StringComparison.Ordinal))
        {
            if (Csvmm.Machine.Migration.MigrationUri.TryParse(uri, out string? problem) is not { } target) return problem;
            bool running = runner.Status == "running";
            string? refusal = runner.StartMigration(target, PauseTimeout, p => OnMigrationStatus(p, running));
            if (refusal is not null)
            {
                _live = false;
                _fileMigration = new QmpMigration("failed", 0, 0, 0, refusal);
                return refusal;
            }
            _live = true;
            Server?.Event("MIGRATION", w => w.WriteString("status", "setup"));
            return null;
        }
        _live = false;
        if (MigrationPath(uri, out string path) is { } refused) return refused;
        if (SnapshotWriteCheck?.Invoke(path) is { } denied)
        {
            _fileMigration = new QmpMigration("failed", 0, 0, 0, denied);
            return denied;
        }
        bool wasRunning = runner.Status == "running";
        var started = DateTime.UtcNow;
        try
        {
            var (ram, downtime) = runner.SaveSnapshot(path, PauseTimeout);
            _fileMigration = new QmpMigration("completed", (long)(DateTime.UtcNow - started).TotalMilliseconds, (long)downtime.TotalMilliseconds, ram);
            if (wasRunning) Server?.Event("STOP");
            return null;
        }
        catch (Csvmm.Machine.Snapshot.SnapshotException e)
        {
            _fileMigration = new QmpMigration("failed", (long)(DateTime.UtcNow - started).TotalMilliseconds, 0, 0, e.Message);
            return e.Message;
        }
    }

    /// <summary>A live migration's events, as QEMU sends them: MIGRATION for each status, STOP when the source stops for
    /// the last copy, RESUME when a failed or cancelled migration lets it run again.</summary>
    private void OnMigrationStatus(Csvmm.Machine.Migration.MigrationProgress p, bool wasRunning)
    {
        string status = p.Status;
        if (status == "device" && wasRunning) Server?.Event("STOP");
        Server?.Event("MIGRATION", w => w.WriteString("status", status));
        if (p.Finished && status is "failed" or "cancelled" && wasRunning && runner.Status == "running") Server?.Event("RESUME");
    }

    /// <summary>MAC on the snapshot file a <c>migrate</c> writes: the refusal, or null to go on (null: not checked).</summary>
    public Func<string, string?>? SnapshotWriteCheck { get; init; }

    /// <summary>The snapshot path a <c>migrate</c> URI names, or why it names none (a client's string: anything may be in it).</summary>
    internal static string? MigrationPath(string uri, out string path)
    {
        path = "";
        if (!uri.StartsWith("file:", StringComparison.Ordinal) || uri.Length == 5)
            return $"migration URI '{uri}' is not supported: expected file:PATH, unix:PATH or tcp:HOST:PORT";
        if (uri.Contains('\0'))
            return "migration URI: a path cannot contain a NUL character";
        path = Path.GetFullPath(uri[5..]);
        return null;
    }

    /// <summary>Forwards the runner's RESET / SHUTDOWN to the client with QEMU's data members.</summary>
    public void OnMachineEvent(string name, string reason)
    {
        bool host = reason.StartsWith("QMP", StringComparison.Ordinal);
        Server?.Event(name, w =>
        {
            w.WriteBoolean("guest", !host);
            w.WriteString("reason", host ? (name == "RESET" ? "host-qmp-system-reset" : "host-qmp-quit") : "guest-" + (name == "RESET" ? "reset" : "shutdown"));
        });
    }
}
