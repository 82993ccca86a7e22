using Csvmm.Machine;
using Csvmm.Machine.Migration;
using Csvmm.Machine.Snapshot;
using Tmds.Linux;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// What a migration's source (or anything that connects to <c>--incoming unix:/tcp:</c>) sends: the stream is read
/// record by record into 64 KiB of "guest RAM" mapped between two PROT_NONE guard pages, so a write outside the region
/// the reader was given faults at once. Only <see cref="SnapshotException"/> may come out; a stream that ends with END
/// must have had a spec first.
/// </summary>
public sealed unsafe class MigrationStreamTarget : IFuzzTarget
{
    private const int RamBytes = 64 << 10, Page = 4096;
    private static readonly byte* s_base = Map();

    private static byte* Map()
    {
        byte* p = (byte*)LibC.mmap(null, (size_t)(ulong)(RamBytes + 2 * Page), LibC.PROT_NONE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
        if (p == (byte*)LibC.MAP_FAILED) throw new InvalidOperationException("mmap failed");
        if (LibC.mprotect(p + Page, (size_t)(ulong)RamBytes, LibC.PROT_READ | LibC.PROT_WRITE) != 0) throw new InvalidOperationException("mprotect failed");
        return p + Page;
    }

    public string Name => "migration-stream";
    public string Description => "live-migration stream reader (header, records, page and zero runs into guard-paged RAM, replies)";

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new MigrationReader(new MemoryStream(input.ToArray()), "fuzz");
        try
        {
            reader.ReadHeader();
            var spec = reader.Next();
            Invariant.Holds(spec.Kind == RecordKind.Spec, "the first record is the spec");
            MachineSpec.Decode(spec.Payload!);
            reader.RamTarget = [((nint)s_base, (ulong)RamBytes)];
            for (int i = 0; i < 10_000; i++)
                if (reader.Next().Kind == RecordKind.End) break;
        }
        catch (Exception e) when (e is SnapshotException or Csvmm.Devices.State.DeviceStateException)
        {
        }
        try
        {
            MigrationWriter.ReadReply(new MemoryStream(input.ToArray()));
        }
        catch (EndOfStreamException)
        {
        }
    }

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        var ms = new MemoryStream();
        var w = new MigrationWriter(ms);
        w.WriteHeader();
        w.WriteSection(RecordKind.Spec, 0, new MachineSpec { Firmware = "/fw.bin", MemoryBytes = 64UL << 20, Cpus = 1 }.Encode());
        w.WritePages(0, Page, Enumerable.Range(0, 2 * Page).Select(i => (byte)i).ToArray());
        w.WriteZero(0, 0, Page);
        w.WriteSection(RecordKind.Vcpu, 0, [1, 2, 3]);
        w.WriteEnd();
        yield return ("stream", ms.ToArray());
    }
}
