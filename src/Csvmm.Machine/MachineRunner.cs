using Csvmm.Devices;
using Csvmm.Kvm;
using Serilog;

namespace Csvmm.Machine;

/// <summary>
/// Runs a guest across resets: each reset builds a fresh <see cref="VirtualMachine"/> (as a power cycle
/// would), unless --no-reboot asked to stop there. Host-side stop requests (signals, Ctrl-A x) and serial
/// input are routed to whichever VM is current.
/// </summary>
public sealed class MachineRunner
{
    private readonly MachineConfig _config;
    private readonly ILogger _log;
    private readonly ISerialOutput _serialOut;
    private volatile VirtualMachine? _current;
    private VmOutcome? _pendingStop;
    private readonly object _lock = new();
    private bool _paused;
    private volatile string _status = "prelaunch";

    private Migration.IIncomingMachine? _incoming;

    /// <param name="incoming">A snapshot or migration stream the first boot is restored from (the machine is built from
    /// its spec, then loaded with it before any vCPU runs); later resets boot normally.</param>
    public MachineRunner(MachineConfig config, ILogger log, ISerialOutput serialOut, Migration.IIncomingMachine? incoming = null)
    {
        _incoming = incoming;
        _config = config;
        _log = log;
        _serialOut = serialOut;
    }

    /// <summary>Number of VM builds (1 + resets).</summary>
    public int Boots { get; private set; }

    /// <summary>Reads the boot files once (a bad one is a BootException before KVM is opened), then boots until the guest ends.</summary>
    public VmOutcome Run()
    {
        BootImages images = BootImages.Read(_config);
        DateTime? deadline = _config.Timeout is { } t ? DateTime.UtcNow + t : null;
        while (true)
        {
            bool startPaused;
            lock (_lock) startPaused = _paused;
            using var vm = VirtualMachine.Create(_config, images, _log, _serialOut, startPaused);
            if (_incoming is { } snapshot)
            {
                _incoming = null;
                var started = DateTime.UtcNow;
                snapshot.Load(vm);
                _log.Information("restored from {Path} in {Ms:0.0} ms", snapshot.Source, (DateTime.UtcNow - started).TotalMilliseconds);
            }
            Boots++;
            lock (_lock)
            {
                _current = vm;
                if (_pendingStop is not null) vm.RequestStop(_pendingStop);
                if (_paused) vm.Pause.Pause(() => { }, TimeSpan.Zero); // a pause that came while this VM was being built
                else vm.ResumeVcpus();
            }
            TimeSpan? left = deadline is { } d ? (d - DateTime.UtcNow) is var l && l > TimeSpan.Zero ? l : TimeSpan.Zero : null;
            // The run state says running (or paused) once the vCPU threads exist: query-cpus-fast then has their ids.
            var outcome = vm.Run(left, () => { lock (_lock) _status = _paused ? "paused" : "running"; });
            EndMigration(); // before the machine is torn down: the migration thread reads its memory
            if (outcome.Kind == VmExitKind.Timeout && _config.Timeout is { } total)
                outcome = outcome with { Reason = $"timeout after {total.TotalSeconds:0.#} s" };
            lock (_lock) _current = null;
            Event?.Invoke(outcome.Kind == VmExitKind.Reset ? "RESET" : "SHUTDOWN", outcome.Reason);
            _log.Information("VM stopped: {Kind} ({Reason}); {Exits} exits", outcome.Kind, outcome.Reason, vm.TotalExits);
            foreach (var v in vm.Vcpus)
                if (v.Emulator.Total > 0)
                    _log.Information("vCPU {Id} emulated {Total} instructions KVM could not run: {Counts}", v.Vcpu.Id, v.Emulator.Total,
                        string.Join(", ", v.Emulator.Counts().Select(c => $"{c.Name} {c.Count}")));
            if (outcome.Kind == VmExitKind.Reset && !_config.NoReboot)
            {
                _log.Information("guest reset: rebooting");
                continue;
            }
            _status = outcome.Kind is VmExitKind.Crashed or VmExitKind.KvmError ? "internal-error" : "shutdown";
            return outcome;
        }
    }

    /// <summary>Machine events for the control interface: ("RESET", reason) when the guest or the host reset it,
    /// ("SHUTDOWN", reason) when it ended. Raised on the thread that runs <see cref="Run"/>.</summary>
    public event Action<string, string>? Event;

    /// <summary>QEMU's run state: prelaunch, running, paused, shutdown, internal-error.</summary>
    public string Status => _status;

    /// <summary>Stops every vCPU at an exit boundary (and keeps a VM built after a reset stopped). True once they are all parked.</summary>
    public bool Pause(TimeSpan timeout)
    {
        VirtualMachine? vm;
        lock (_lock)
        {
            _paused = true;
            vm = _current;
            if (vm is null) return true;
            _status = "paused";
        }
        return vm.PauseVcpus(timeout);
    }

    /// <summary>
    /// Stops the vCPUs (if they run), writes the machine to <paramref name="path"/> and leaves it stopped ("postmigrate",
    /// as QEMU leaves a source VM). Returns the RAM bytes written and how long the vCPUs were stopped for it.
    /// </summary>
    /// <exception cref="Snapshot.SnapshotException">The machine cannot be saved (the file), or there is none.</exception>
    public (long RamBytes, TimeSpan Downtime) SaveSnapshot(string path, TimeSpan pauseTimeout)
    {
        var vm = _current ?? throw new Snapshot.SnapshotException("there is no running machine to save");
        var started = DateTime.UtcNow;
        if (!Pause(pauseTimeout)) throw new Snapshot.SnapshotException("the vCPUs did not stop");
        try
        {
            long ram = Snapshot.MachineSnapshot.Save(vm, path);
            _status = "postmigrate";
            return (ram, DateTime.UtcNow - started);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or KvmException)
        {
            throw new Snapshot.SnapshotException($"saving to {path}: {e.Message}");
        }
    }

    private Migration.MigrationSender? _sender;
    private Thread? _migrationThread;
    private CancellationTokenSource? _migrationCancel;
    private Stream? _migrationStream;

    /// <summary>The live migration started last (its progress and outcome), or null.</summary>
    public Migration.MigrationProgress? LiveMigration => _sender?.Progress;

    /// <summary>
    /// Starts a live migration of the current VM to <paramref name="uri"/> on its own thread (QMP <c>migrate</c> returns
    /// at once, as QEMU's does). <paramref name="onStatus"/> hears each status change (active, device, completed,
    /// failed, cancelled) on that thread. Returns null once started, else why it could not start.
    /// </summary>
    public string? StartMigration(Migration.MigrationUri uri, TimeSpan pauseTimeout, Action<Migration.MigrationProgress>? onStatus)
    {
        if (_current is null) return "there is no running machine to migrate";
        if (_migrationThread is { IsAlive: true }) return "a migration is already in progress";
        System.Net.Sockets.Socket socket;
        try { socket = uri.Connect(TimeSpan.FromSeconds(10)); }
        catch (Snapshot.SnapshotException e) { return e.Message; }
        lock (_lock)
        {
            var vm = _current;
            string? refusal = vm is null ? "there is no running machine to migrate"
                : _migrationThread is { IsAlive: true } ? "a migration is already in progress"
                : _status is not ("running" or "paused") ? $"the VM cannot be migrated from state '{_status}'" : null;
            if (refusal is not null)
            {
                socket.Dispose();
                return refusal;
            }
            var stream = new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            var cancel = new CancellationTokenSource();
            bool running = _status == "running";
            var sender = new Migration.MigrationSender(vm!, stream, _log, () => Pause(pauseTimeout), Resume, running, cancel.Token);
            if (onStatus is not null) sender.Progress.Changed += onStatus;
            _sender = sender;
            _migrationCancel = cancel;
            _migrationStream = stream;
            _migrationThread = new Thread(() =>
            {
                try
                {
                    sender.Run();
                    _status = "postmigrate";
                }
                catch (Snapshot.SnapshotException e)
                {
                    _log.Warning("migration to {Uri} {Status}: {Error}", uri.Text, sender.Progress.Status, e.Message);
                }
                finally
                {
                    stream.Dispose();
                    sender.Progress.Finish();
                }
            }) { Name = "migration", IsBackground = true };
            _migrationThread.Start();
            return null;
        }
    }

    /// <summary>Cancels a live migration in its pre-copy (QMP <c>migrate_cancel</c>); the VM goes on running here.</summary>
    public void CancelMigration() => _migrationCancel?.Cancel();

    /// <summary>Aborts a migration still in progress (the VM is ending) and waits for its thread.</summary>
    private void EndMigration()
    {
        var thread = _migrationThread;
        if (thread is null) return;
        _migrationCancel?.Cancel();
        if (!thread.Join(TimeSpan.FromMilliseconds(200)))
        {
            _migrationStream?.Dispose(); // unblocks a write to a destination that stopped reading
            thread.Join();
        }
        _migrationThread = null;
    }

    /// <summary>Lets the vCPUs run again.</summary>
    /// <exception cref="Snapshot.SnapshotException">The VM was migrated away and its disks now belong to the destination.</exception>
    public void Resume()
    {
        lock (_lock)
        {
            if (_status == "postmigrate" && _current is { } vm)
                foreach (var d in vm.Config.AttachedDisks)
                    if (d.Backend is Csvmm.Block.RawDisk raw)
                    {
                        try { raw.AcquireLock(); }
                        catch (Csvmm.Block.DiskException e) { throw new Snapshot.SnapshotException($"the VM was migrated and {d.Name} is in use elsewhere: {e.Message}"); }
                    }
            _paused = false;
            _current?.ResumeVcpus();
            if (_current is not null) _status = "running";
        }
    }

    /// <summary>Resets the machine as its reset line would (rebuilt, unless --no-reboot ends csvmm there).</summary>
    public void Reset(string reason)
    {
        lock (_lock) _current?.Control.RequestReset(reason);
    }

    /// <summary>Presses the ACPI power button of the current VM.</summary>
    public void PressPowerButton()
    {
        lock (_lock) _current?.Platform.PressPowerButton();
    }

    /// <summary>The current VM's vCPU threads (index, host thread id), or none between boots.</summary>
    public IReadOnlyList<(int Index, long ThreadId)> VcpuThreads()
    {
        var vm = _current;
        return vm is null ? [] : vm.Vcpus.Select(v => (v.Vcpu.Id, v.ThreadId)).ToList();
    }

    /// <summary>Counters of the current VM for the control interface.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> Stats()
    {
        var vm = _current;
        var list = new List<KeyValuePair<string, long>> { new("boots", Boots) };
        if (vm is null) return list;
        list.Add(new("exits", vm.TotalExits));
        list.Add(new("emulated-instructions", vm.Vcpus.Sum(v => (long)v.Emulator.Total)));
        return list;
    }

    /// <summary>Stops the current VM (or the next one, if called between boots). Any thread.</summary>
    public void RequestStop(VmOutcome outcome)
    {
        lock (_lock)
        {
            _pendingStop ??= outcome;
            _current?.RequestStop(outcome);
        }
    }

    /// <summary>Delivers host input to the current VM's COM1; returns bytes accepted, or -1 when no VM will take any more.</summary>
    public int SerialInput(ReadOnlySpan<byte> data)
    {
        var vm = _current;
        if (vm is null) return _pendingStop is null ? 0 : -1;
        return vm.Platform.SerialInput(data);
    }
}
