using System.Globalization;
using Csvmm.TinyGuests;
using Iced.Intel;

namespace Csvmm.Bench.Guests;

/// <summary>
/// <c>Csvmm.Bench.Guests OUTDIR [N ...]</c>: writes pio-N.bin, mmio-N.bin and popcnt-N.bin for every N (default 0, 1000, 1000000),
/// and ramwriter.bin (the migration benchmark's guest: rewrites 1 MiB of its RAM page by page and counts on COM1).
/// <c>--disasm IMAGE</c> prints the code of an image written by this tool.
/// </summary>
public static class Program
{
    private static readonly uint[] DefaultCounts = [0, 1000, 1_000_000];

    public static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "--disasm") return Disassemble(args[1]);
        if (args.Length < 1 || args[0].StartsWith('-'))
        {
            Console.Error.WriteLine("usage: Csvmm.Bench.Guests OUTDIR [N ...] | --disasm IMAGE");
            return 2;
        }
        var counts = new List<uint>();
        foreach (var arg in args.AsSpan(1))
        {
            if (!uint.TryParse(arg, NumberStyles.None, CultureInfo.InvariantCulture, out uint n))
            {
                Console.Error.WriteLine($"Csvmm.Bench.Guests: '{arg}' is not an iteration count (0 to {uint.MaxValue})");
                return 2;
            }
            counts.Add(n);
        }
        if (counts.Count == 0) counts.AddRange(DefaultCounts);

        Directory.CreateDirectory(args[0]);
        foreach (uint n in counts)
        {
            Save(GuestPrograms.PioLoop(n), Path.Combine(args[0], $"pio-{n}.bin"));
            Save(GuestPrograms.MmioLoop(n), Path.Combine(args[0], $"mmio-{n}.bin"));
            Save(GuestPrograms.PopcntLoop(n), Path.Combine(args[0], $"popcnt-{n}.bin"));
        }
        Save(CountingGuests.RamWriter(256), Path.Combine(args[0], "ramwriter.bin"));
        return 0;
    }

    private static void Save(byte[] image, string path)
    {
        File.WriteAllBytes(path, image);
        Console.WriteLine(path);
    }

    /// <summary>Decodes the pieces of an image at the offsets <see cref="GuestPrograms"/> uses (16-bit code at 0, 32-bit at 0x100).</summary>
    private static int Disassemble(string path)
    {
        byte[] image = File.ReadAllBytes(path);
        if (image.Length != FirmwareImage.Size)
        {
            Console.Error.WriteLine($"Csvmm.Bench.Guests: {path} is {image.Length} bytes, not a 64 KiB BIOS image");
            return 1;
        }
        var formatter = new NasmFormatter();
        void Dump(string title, int bitness, int start, int end, ulong ip)
        {
            Console.WriteLine($"; {title}");
            var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(image, start, end - start), ip);
            var output = new StringOutput();
            while (decoder.IP < ip + (ulong)(end - start))
            {
                decoder.Decode(out var instr);
                int next = start + (int)(instr.IP - ip) + 1;
                if (instr.Code == Code.Hlt && (next >= end || image[next] == 0xF4)) break;   // the image's hlt fill
                formatter.Format(instr, output);
                Console.WriteLine($"  {instr.IP:X8}  {output.ToStringAndReset()}");
            }
        }
        Dump("16-bit code at F000:0000", 16, 0, 0x80, 0);
        Dump("32-bit code at 0xF0100 (mmio images only)", 32, 0x100, 0x200, FirmwareImage.LowBase + 0x100);
        Dump("reset vector at F000:FFF0", 16, FirmwareImage.ResetVectorOffset, FirmwareImage.Size, FirmwareImage.ResetVectorOffset);
        return 0;
    }
}
