using Csvmm.Control;

namespace Csvmm.Control.Tests;

internal sealed class FakeMachine : IQmpMachine
{
    public string State = "running";
    public readonly List<string> Calls = [];
    public bool PauseWorks = true;

    /// <summary>A copy of <see cref="Calls"/> that is safe to take while the server thread may add to it.</summary>
    public string[] CallsSnapshot() { lock (Calls) return [.. Calls]; }

    public string Status => State;
    public bool Pause() { Calls.Add("pause"); if (PauseWorks) State = "paused"; return PauseWorks; }
    public void Resume() { Calls.Add("resume"); State = "running"; }
    public void Reset() => Calls.Add("reset");
    public void PowerButton() => Calls.Add("powerbutton");
    public void Quit() { lock (Calls) Calls.Add("quit"); State = "shutdown"; }
    public IReadOnlyList<QmpCpu> Cpus { get; } = [new(0, 1234), new(1, 1235)];
    public IReadOnlyList<QmpBlock> Block { get; } = [new("virtio0", "/img/a.img", false, 1 << 20, "virtio"), new("ide0-0", "/img/b.img", true, 2 << 20, "ide")];
    public string? MigrateError;
    public string? Migrate(string uri) { Calls.Add("migrate " + uri); if (MigrateError is null) Migration = new("completed", 12, 3, 4096); return MigrateError; }
    public QmpMigration? Migration { get; private set; }
    public void CancelMigration() => Calls.Add("migrate_cancel");
    public IReadOnlyList<KeyValuePair<string, long>> Stats() => [new("exits", 42), new("uptime-ms", 7)];
}
