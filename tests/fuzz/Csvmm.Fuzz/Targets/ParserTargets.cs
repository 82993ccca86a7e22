using System.Text;
using System.Text.Json;
using Csvmm.Boot;
using Csvmm.Boot.Tests;
using Csvmm.Cli;
using Csvmm.Control;
using Csvmm.Devices.State;
using Csvmm.Machine;
using Csvmm.Machine.Snapshot;
using Csvmm.Memory;
using Csvmm.Security;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// The input is a kernel file (bzImage or ELF vmlinux) loaded into 64 MiB of guest RAM with a small initrd and a
/// command line, as <c>--kernel</c> does. Only <see cref="BootException"/> may come out.
/// </summary>
public sealed class KernelTarget : IFuzzTarget
{
    private static readonly Lazy<GuestMemory> s_memory = new(() =>
    {
        var m = new GuestMemory();
        m.AddRegion(GuestAddress.Zero, 64UL << 20, "ram");
        return m;
    });
    private static readonly BootOptions s_options = new()
    {
        CommandLine = "console=ttyS0 panic=-1",
        Initrd = new BootFile("initrd", new byte[4096]),
    };

    public string Name => "kernel";
    public string Description => "bzImage / ELF (PVH) kernel loaders (--kernel, --initrd, --append)";

    public void Run(ReadOnlySpan<byte> input)
    {
        try
        {
            var plan = KernelImage.Load(s_memory.Value, new BootFile("fuzz-kernel", input.ToArray()), s_options);
            Invariant.Holds(plan.Entry.Value < (64UL << 20), "the entry point lies in guest RAM");
        }
        catch (BootException)
        {
        }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        yield return ("bzimage", FakeBzImage.Build());
        yield return ("bzimage-small", FakeBzImage.Build(setupSects: 1, payload: 512));
        yield return ("elf-pvh", new ElfBuilder().Load(0x100_0000, new byte[256], 0x2000).Notes(ElfBuilder.PvhNote(0x100_0000)).Build());
        yield return ("elf-pvh-4byte-note", new ElfBuilder().Load(0x20_0000, new byte[64], 64).Notes(ElfBuilder.PvhNote(0x20_0000, 4)).Build());
    }
}

/// <summary>The input is a file_contexts file (UTF-8); every parsed one is then asked for a few paths.</summary>
public sealed class FileContextsTarget : IFuzzTarget
{
    private static readonly string[] Paths = ["/var/lib/libvirt/images/a.img", "/tmp/x", "/", "/var/lib/csvmm/snapshots/s.snap", "/a/b/c/d/e/f/g"];

    public string Name => "file-contexts";
    public string Description => "file_contexts parser and matcher (--file-contexts, policy/)";

    public void Run(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        FileContexts contexts;
        try
        {
            contexts = FileContexts.Parse(text, "fuzz");
        }
        catch (SecurityPolicyException)
        {
            return;
        }
        foreach (string p in Paths)
            foreach (var kind in new[] { FileKind.Any, FileKind.Regular, FileKind.BlockDevice })
            {
                try
                {
                    contexts.Lookup(p, kind);
                }
                catch (SecurityPolicyException)
                {
                }
            }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        yield return ("csvmm", Encoding.UTF8.GetBytes(
            "/var/lib/csvmm/images(/.*)?\tsystem_u:object_r:svirt_image_t:s0\n" +
            "/var/lib/csvmm/snapshots(/.*)?\t--\tsystem_u:object_r:qemu_snapshot_t:s0\n" +
            "/tmp/[^/]+\\.img\t-b\tsystem_u:object_r:fixed_disk_device_t:s0\n" +
            "# comment\n\n/a/b\t<<none>>\n"));
        yield return ("kinds", Encoding.UTF8.GetBytes("/x -- u:r:t:s0\n/y -d u:r:t:s0\n/z -l u:r:t:s0\n/w -c u:r:t:s0\n/v -p u:r:t:s0\n/u -s u:r:t:s0\n"));
    }
}

/// <summary>The input is lines of option values: each goes through the --disk, size (--memory) and --qmp parsers.</summary>
public sealed class CliSpecTarget : IFuzzTarget
{
    public string Name => "cli-specs";
    public string Description => "--disk, --memory and --qmp value parsers";

    public void Run(ReadOnlySpan<byte> input)
    {
        foreach (string line in Encoding.UTF8.GetString(input).Split('\n'))
        {
            bool ok = DiskSpecParser.TryParse(line, out var disk, out string error);
            Invariant.Holds(ok ? disk is not null && disk.Path.Length > 0 : error.Length > 0 && !error.Contains('\n') || line.Contains('\n'), "--disk result");
            ok = SizeParser.TryParse(line, out ulong bytes, out error);
            Invariant.Holds(ok || error.Length > 0, "size error");
            ok = QmpSpecParser.TryParse(line, out string? path, out error);
            Invariant.Holds(ok ? !string.IsNullOrEmpty(path) : error.Length > 0, "--qmp result");
        }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        yield return ("disks", Encoding.UTF8.GetBytes("a.img\n/x/b.img,if=ide,readonly=on,cache=none\nc,,d.img,if=virtio\n"));
        yield return ("sizes", Encoding.UTF8.GetBytes("512M\n1G\n4096\n64k\n"));
        yield return ("qmp", Encoding.UTF8.GetBytes("unix:/tmp/q.sock,server=on,wait=off\nunix:/run/csvmm.qmp\n"));
    }
}

/// <summary>
/// The input is a snapshot file (<c>--incoming file:</c>, <c>csvmm check --snapshot</c>): opened, every section read
/// and checked, the spec and vCPU states decoded. Only <see cref="SnapshotException"/> and
/// <see cref="DeviceStateException"/> may come out.
/// </summary>
public sealed class SnapshotFileTarget : IFuzzTarget
{
    private static readonly string s_path = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(),
        $"csvmm-fuzz-{Environment.ProcessId}.snap");

    public string Name => "snapshot-file";
    public string Description => "snapshot file reader (header, section table, CRCs, sections)";

    public void Run(ReadOnlySpan<byte> input)
    {
        File.WriteAllBytes(s_path, input.ToArray());
        try
        {
            using var r = SnapshotReader.Open(s_path);
            foreach (var s in r.Sections)
            {
                if (s.Kind == SectionKind.Ram)
                {
                    r.VerifyRam(s);
                    continue;
                }
                byte[] bytes = r.Read(s);
                if (s.Kind == SectionKind.Spec) MachineSpec.Decode(bytes);
                else if (s.Kind == SectionKind.Vcpu) VcpuState.Decode(bytes, (int)Math.Min(s.Index, 1024));
            }
        }
        catch (Exception e) when (e is SnapshotException or DeviceStateException)
        {
        }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        string path = Path.Combine(Path.GetTempPath(), $"csvmm-seed-{Environment.ProcessId}.snap");
        try
        {
            using (var w = new SnapshotWriter(path))
            {
                w.Add(SectionKind.Spec, 0, new MachineSpec { Firmware = "/fw.bin", MemoryBytes = 64UL << 20, Cpus = 1 }.Encode());
                w.Add(SectionKind.Devices, 0, [1, 2, 3]);
                w.Add(SectionKind.Ram, 0, new byte[100]);
                w.Finish();
            }
            yield return ("minimal", File.ReadAllBytes(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary>
/// The input's first byte picks a decoder for the rest, past the snapshot's CRCs (what a forged snapshot with correct
/// checksums reaches): 0 the machine spec, 1 a vCPU state, 2 a device-state blob. Decoded specs must re-encode to
/// the same bytes.
/// </summary>
public sealed class SnapshotSectionsTarget : IFuzzTarget
{
    public string Name => "snapshot-sections";
    public string Description => "snapshot section decoders (machine spec, vCPU state, device-state blob)";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        var rest = input[1..];
        try
        {
            switch (input[0] % 3)
            {
                case 0:
                    var spec = MachineSpec.Decode(rest);
                    byte[] canonical = spec.Encode(); // absent texts may come back empty: the encoding is canonical after one round
                    Invariant.Holds(MachineSpec.Decode(canonical).Encode().AsSpan().SequenceEqual(canonical), "a decoded spec round-trips");
                    break;
                case 1:
                    VcpuState.Decode(rest, 0);
                    break;
                default:
                    new DeviceStateSet().LoadAll(rest);
                    break;
            }
        }
        catch (Exception e) when (e is SnapshotException or DeviceStateException)
        {
        }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        yield return ("spec", [0, .. new MachineSpec { Kernel = "/k", Append = "console=ttyS0", MemoryBytes = 32UL << 20, Cpus = 2,
            Disks = [new DiskSpec("/a.img", DiskInterface.Ide, true, DiskCache.None)], Timeout = TimeSpan.FromSeconds(3) }.Encode()]);
        yield return ("devices", [2, .. new DeviceStateSet().SaveAll()]);
    }
}

/// <summary>
/// The input is what a QMP client sends, in chunks (the first byte sets the chunk size), to a session over a fake
/// machine. Every reply must be one JSON object with exactly one of QMP, return, error or event.
/// </summary>
public sealed class QmpTarget : IFuzzTarget
{
    public string Name => "qmp";
    public string Description => "QMP session: JSON stream splitter, negotiation, command dispatch";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        int chunk = input[0] % 64 + 1;
        var session = new QmpSession(new FakeMachine(), CheckReply, new QmpPeer(1, 0, 0));
        session.Greet();
        for (var data = input[1..]; !data.IsEmpty && !session.QuitRequested; data = data[Math.Min(chunk, data.Length)..])
            session.Receive(data[..Math.Min(chunk, data.Length)]);
    }

    private static void CheckReply(byte[] reply)
    {
        using var doc = JsonDocument.Parse(reply);
        Invariant.Holds(doc.RootElement.ValueKind == JsonValueKind.Object, "a reply is a JSON object");
        int kinds = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
            if (p.Name is "QMP" or "return" or "error" or "event") kinds++;
        Invariant.Holds(kinds == 1, "a reply is one of QMP, return, error, event");
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        static byte[] S(string s) => [7, .. Encoding.UTF8.GetBytes(s)];
        yield return ("negotiate", S("{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-status\"}"));
        yield return ("commands", S("{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"stop\",\"id\":1}\n{\"execute\":\"cont\"}\n" +
            "{\"execute\":\"query-block\"}{\"execute\":\"query-cpus-fast\"}{\"execute\":\"query-stats\"}{\"execute\":\"query-version\"}" +
            "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:/tmp/x\"}}{\"execute\":\"query-migrate\"}{\"execute\":\"system_reset\"}"));
        yield return ("errors", S("{\"execute\":\"stop\"}{\"execute\":\"qmp_capabilities\"}{\"execute\":\"nope\"}{\"execute\":\"migrate\",\"arguments\":{}}[1,2]\"x\"{bad"));
        yield return ("quit", S("{\"execute\":\"qmp_capabilities\"}{\"execute\":\"quit\"}{\"execute\":\"query-status\"}"));
    }

    private sealed class FakeMachine : IQmpMachine
    {
        private string _state = "running";
        public string Status => _state;
        public bool Pause() { _state = "paused"; return true; }
        public void Resume() => _state = "running";
        public void Reset() { }
        public void PowerButton() { }
        public void Quit() => _state = "shutdown";
        public IReadOnlyList<QmpCpu> Cpus { get; } = [new(0, 100)];
        public IReadOnlyList<QmpBlock> Block { get; } = [new("virtio0", "/a.img", false, 1 << 20, "virtio")];
        public string? Migrate(string uri)
        {
            Migration = new QmpMigration("completed", 1, 1, 4096);
            return uri.StartsWith("file:", StringComparison.Ordinal) ? null : "only file: migration";
        }
        public QmpMigration? Migration { get; private set; }
        public IReadOnlyList<KeyValuePair<string, long>> Stats() => [new("exits", 1)];
    }
}
