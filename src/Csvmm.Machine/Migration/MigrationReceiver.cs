using System.Diagnostics;
using Csvmm.Block;
using Csvmm.Machine.Snapshot;

namespace Csvmm.Machine.Migration;

/// <summary>Where a machine's first boot comes from instead of its boot files: a snapshot file or a migration stream.</summary>
public interface IIncomingMachine : IDisposable
{
    /// <summary>Names the source in messages (the snapshot's path, the migration URI).</summary>
    string Source { get; }

    /// <summary>The machine to build.</summary>
    MachineSpec Spec { get; }

    /// <summary>Loads the state into <paramref name="vm"/> (built from <see cref="Spec"/>, not yet run).</summary>
    /// <exception cref="SnapshotException">The state cannot be used: the machine must not run.</exception>
    void Load(VirtualMachine vm);
}

/// <summary>A snapshot file as the incoming machine (<c>--incoming file:PATH</c>).</summary>
public sealed class SnapshotIncoming(SnapshotReader reader) : IIncomingMachine
{
    public SnapshotReader Reader => reader;
    public string Source => reader.Path;
    public MachineSpec Spec { get; } = MachineSnapshot.ReadSpec(reader);
    public void Load(VirtualMachine vm) => MachineSnapshot.Load(vm, reader);
    public void Dispose() => reader.Dispose();
}

/// <summary>
/// The destination side of a live migration (<c>--incoming unix:PATH</c> / <c>tcp:HOST:PORT</c>): the spec is read
/// first (the caller builds the machine, its disks opened without their locks), then <see cref="Load"/> receives RAM
/// and state until END, loads them, takes the disks' locks (the source released them before END) and tells the source
/// it has the VM. A refusal at any point is sent to the source too, which then resumes the VM on its side.
/// </summary>
public sealed class MigrationReceiver : IIncomingMachine, IDisposable
{
    private readonly Stream _stream;
    private readonly MigrationReader _reader;

    private MigrationReceiver(Stream stream, string source, MigrationReader reader, MachineSpec spec)
    {
        _stream = stream;
        Source = source;
        _reader = reader;
        Spec = spec;
    }

    public string Source { get; }
    public MachineSpec Spec { get; }

    /// <summary>RAM bytes received (pages, not zero runs) and how long <see cref="Load"/> took.</summary>
    public long RamBytes { get; private set; }
    public TimeSpan LoadTime { get; private set; }

    /// <summary>Reads the stream's header and the machine spec.</summary>
    public static MigrationReceiver Start(Stream stream, string source)
    {
        var reader = new MigrationReader(stream, source);
        try
        {
            reader.ReadHeader();
            var spec = reader.Next();
            return new MigrationReceiver(stream, source, reader, MachineSpec.Decode(spec.Payload!));
        }
        catch (Devices.State.DeviceStateException e)
        {
            Refuse(stream, e.Message);
            throw new SnapshotException($"{source}: {e.Message}");
        }
        catch (SnapshotException e)
        {
            Refuse(stream, e.Message);
            throw;
        }
    }

    public void Load(VirtualMachine vm)
    {
        var started = Stopwatch.StartNew();
        try
        {
            _reader.RamTarget = MachineSnapshot.RamRegions(vm).Select(r => (r.HostAddress, r.Size)).ToList();
            try
            {
                MigrationReader.Reply(_stream, null, MigrationFormat.ReplyReady); // built and allowed: the source may start copying
            }
            catch (IOException e)
            {
                throw new SnapshotException($"{Source}: the source went away: {e.Message}");
            }
            var sections = new Dictionary<(SectionKind Kind, uint Index), byte[]>();
            while (true)
            {
                var record = _reader.Next();
                if (record.Kind == RecordKind.End) break;
                if (record.Kind is RecordKind.Pages or RecordKind.Zero) { RamBytes += record.Bytes; continue; }
                if (!sections.TryAdd(((SectionKind)record.Kind, record.Index), record.Payload!))
                    throw new SnapshotException($"{Source}: two {record.Kind} records with index {record.Index}");
            }
            MachineSnapshot.LoadState(vm, Spec, sections, () => { });
            foreach (var d in vm.Config.AttachedDisks)
                if (d.Backend is RawDisk raw)
                {
                    try { raw.AcquireLock(); }
                    catch (DiskException e) { throw new SnapshotException($"{Source}: taking over {d.Name}: {e.Message}"); }
                }
        }
        catch (SnapshotException e)
        {
            Refuse(_stream, e.Message);
            throw;
        }
        catch (Exception e) when (e is Kvm.KvmException or Devices.State.DeviceStateException)
        {
            Refuse(_stream, e.Message);
            throw new SnapshotException($"{Source}: {e.Message}");
        }
        try
        {
            MigrationReader.Reply(_stream, null);
        }
        catch (IOException e)
        {
            throw new SnapshotException($"{Source}: the source went away before it knew the VM arrived: {e.Message}");
        }
        LoadTime = started.Elapsed;
    }

    /// <summary>Tells the source this csvmm will not take the VM (a denial or bad input found before <see cref="Load"/>).</summary>
    public void Refuse(string why) => Refuse(_stream, why);

    private static void Refuse(Stream stream, string why)
    {
        try { MigrationReader.Reply(stream, why); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException) { }
    }

    public void Dispose() => _stream.Dispose();
}
