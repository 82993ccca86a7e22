using System.Globalization;
using Csvmm.TinyGuests;

namespace Csvmm.Bench.Disk;

/// <summary>
/// <c>Csvmm.Bench.Disk images OUTDIR [--seq-bytes N] [--seq-request-kib K] [--seq-qd Q] [--rand-requests N] [--ide-rand-requests N] [--rand-qd Q] [--ide-poll-pauses P] [--seed S]</c>
/// writes the four benchmark guests (virtio-seq.bin, virtio-rand.bin, ide-dma-seq.bin, ide-dma-rand.bin), one line each.
/// <c>Csvmm.Bench.Disk pattern-image PATH MIB SEED</c> writes a test image filled with the guests' pattern.
/// <c>Csvmm.Bench.Disk smoke OUT.bin virtio|ide-pio|ide-dma</c> writes a write / flush / read-verify guest.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        try
        {
            return args.Length > 0 ? args[0] switch
            {
                "images" => Images(args.AsSpan(1)),
                "pattern-image" when args.Length == 4 => PatternImage(args[1], Parse(args[2]), Parse(args[3])),
                "smoke" when args.Length == 3 => Smoke(args[1], ParseInterface(args[2])),
                _ => Usage(),
            } : Usage();
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException or IOException && Environment.GetEnvironmentVariable("CSVMM_TRACE") is null)
        {
            Console.Error.WriteLine($"Csvmm.Bench.Disk: {e.Message}");
            return 2;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: Csvmm.Bench.Disk images OUTDIR [--seq-bytes N] [--seq-request-kib K] [--seq-qd Q] [--rand-requests N] [--ide-rand-requests N] [--rand-qd Q] [--ide-poll-pauses P] [--seed S]");
        Console.Error.WriteLine("       Csvmm.Bench.Disk pattern-image PATH MIB SEED");
        Console.Error.WriteLine("       Csvmm.Bench.Disk smoke OUT.bin virtio|ide-pio|ide-dma");
        return 2;
    }

    private static ulong Parse(string text) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.Parse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture)
            : ulong.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);

    private static DiskInterface ParseInterface(string text) => text switch
    {
        "virtio" => DiskInterface.Virtio,
        "ide-pio" => DiskInterface.IdePio,
        "ide-dma" => DiskInterface.IdeDma,
        _ => throw new ArgumentException($"'{text}': expected virtio, ide-pio or ide-dma"),
    };

    private static int Images(ReadOnlySpan<string> args)
    {
        if (args.Length < 1) return Usage();
        string dir = args[0];
        ulong seqBytes = 256UL << 20, seqRequestKib = 128, seqQd = 1, randRequests = 20000, ideRandRequests = 2000, randQd = 32, seed = 0x5EED_CAFE, idePollPauses = 0;
        for (int i = 1; i < args.Length; i += 2)
        {
            if (i + 1 >= args.Length) throw new ArgumentException($"{args[i]} needs a value");
            ulong v = Parse(args[i + 1]);
            switch (args[i])
            {
                case "--seq-bytes": seqBytes = v; break;
                case "--seq-request-kib": seqRequestKib = v; break;
                case "--seq-qd": seqQd = v; break;
                case "--rand-requests": randRequests = v; break;
                case "--rand-qd": randQd = v; break;
                case "--ide-rand-requests": ideRandRequests = v; break;
                case "--ide-poll-pauses": idePollPauses = v; break;
                case "--seed": seed = v; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        uint seqSectors = checked((uint)(seqRequestKib * 2));
        ulong seqRequests = seqBytes / (seqSectors * 512UL);
        if (seqRequests == 0) throw new ArgumentException("--seq-bytes is smaller than one request");
        Directory.CreateDirectory(dir);
        foreach (var (name, iface) in new[] { ("virtio", DiskInterface.Virtio), ("ide-dma", DiskInterface.IdeDma) })
        {
            int pauses = checked((int)idePollPauses);
            ulong rand = iface == DiskInterface.Virtio ? randRequests : ideRandRequests;
            Write(Path.Combine(dir, $"{name}-seq.bin"), iface, pauses, DiskOp.BenchSequential(0, seqRequests, seqSectors, checked((uint)seqQd)));
            Write(Path.Combine(dir, $"{name}-rand.bin"), iface, pauses, DiskOp.BenchRandom(rand, 8, checked((uint)randQd), seed));
        }
        return 0;
    }

    private static void Write(string path, DiskInterface iface, int idePollPauses, DiskOp op)
    {
        DiskGuest.Save(new DiskGuestOptions { Interface = iface, Operations = [op], TimeoutSeconds = 60, IdePollPauses = idePollPauses }, path);
        Console.WriteLine(path);
    }

    private static int PatternImage(string path, ulong mib, ulong seed)
    {
        DiskPattern.CreateImage(path, checked((long)(mib << 20)), seed);
        Console.WriteLine(path);
        return 0;
    }

    private static int Smoke(string path, DiskInterface iface)
    {
        DiskGuest.Save(new DiskGuestOptions
        {
            Interface = iface,
            Operations = [DiskOp.Write(8, 300, 7), DiskOp.Flush(), DiskOp.ReadVerify(8, 300, 7)],
        }, path);
        Console.WriteLine(path);
        return 0;
    }
}
