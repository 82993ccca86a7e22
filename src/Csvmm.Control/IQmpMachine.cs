namespace Csvmm.Control;

/// <summary>
/// What the control interface may ask of the machine. Implemented above the machine (the CLI adapts its runner), so
/// this component depends on nothing of csvmm's. Every member is called on the control thread and must be thread-safe.
/// </summary>
public interface IQmpMachine
{
    /// <summary>QEMU's RunState name: "running", "paused", "shutdown", "internal-error", ...</summary>
    string Status { get; }

    /// <summary>Stops every vCPU at an exit boundary (QMP <c>stop</c>); true once they are all stopped.</summary>
    bool Pause();

    /// <summary>Lets the vCPUs run again (QMP <c>cont</c>).</summary>
    void Resume();

    /// <summary>Resets the machine as its reset line would (QMP <c>system_reset</c>).</summary>
    void Reset();

    /// <summary>Presses the ACPI power button (QMP <c>system_powerdown</c>): the guest decides what to do.</summary>
    void PowerButton();

    /// <summary>Ends the VM and csvmm (QMP <c>quit</c>).</summary>
    void Quit();

    /// <summary>The vCPUs: index and host thread id.</summary>
    IReadOnlyList<QmpCpu> Cpus { get; }

    /// <summary>The disks, in the order of the --disk options.</summary>
    IReadOnlyList<QmpBlock> Block { get; }

    /// <summary>
    /// Migrates the VM to <paramref name="uri"/> (QMP <c>migrate</c>; <c>file:PATH</c> writes a snapshot), leaving it
    /// stopped when done. Returns null on success, else the error the client sees.
    /// </summary>
    string? Migrate(string uri);

    /// <summary>The last migration's outcome for <c>query-migrate</c>, or null when none was started.</summary>
    QmpMigration? Migration { get; }

    /// <summary>Cancels a live migration still in pre-copy (QMP <c>migrate_cancel</c>); nothing when there is none.</summary>
    void CancelMigration() { }

    /// <summary>csvmm's counters for <c>query-stats</c>: name → value, in a stable order.</summary>
    IReadOnlyList<KeyValuePair<string, long>> Stats();
}

/// <summary>A migration as <c>query-migrate</c> reports it: QEMU's status name ("setup", "active", "device",
/// "completed", "failed", "cancelled"), times, RAM.</summary>
public sealed record QmpMigration(string Status, long TotalTimeMs, long DowntimeMs, long RamBytes, string? Error = null)
{
    /// <summary>RAM bytes sent (null: all of <see cref="RamBytes"/>, a snapshot file).</summary>
    public long? TransferredBytes { get; init; }
    /// <summary>Pages skipped because they were all zero (QEMU's "duplicate").</summary>
    public long ZeroPages { get; init; }
    /// <summary>Pages sent (QEMU's "normal").</summary>
    public long NormalPages { get; init; }
    /// <summary>Dirty-log rounds (QEMU's "dirty-sync-count").</summary>
    public long DirtySyncCount { get; init; }
    /// <summary>Pages the last round found dirty (QEMU's "remaining", in pages).</summary>
    public long RemainingPages { get; init; }
    public long SetupTimeMs { get; init; }
}

/// <summary>One vCPU as <c>query-cpus-fast</c> reports it.</summary>
public sealed record QmpCpu(int Index, long ThreadId);

/// <summary>One disk as <c>query-block</c> reports it.</summary>
public sealed record QmpBlock(string Device, string File, bool ReadOnly, long Size, string Interface);
