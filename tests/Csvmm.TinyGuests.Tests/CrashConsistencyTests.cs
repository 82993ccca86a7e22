using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Csvmm.TinyGuests.Tests;

/// <summary>
/// A VMM that is killed loses no acknowledged write. A disk guest writes numbered 4 KiB blocks, each followed by a
/// FLUSH (virtio) / FLUSH CACHE (IDE), and prints every write and every completed flush; csvmm is killed (SIGKILL) at
/// a random moment, 25 times for each interface and cache mode (100 kills), and every block whose flush the guest saw
/// complete must be on the image, whole. SIGTERM (a clean stop) must leave every write the guest saw complete, flushed
/// or not, on the image, and the image unlocked.
/// </summary>
public sealed partial class CrashConsistencyTests
{
    private const int Blocks = 120;          // write + flush pairs: 240 of the operation block's 246 entries
    private const int BlockSectors = 8;
    private const ulong SeedBase = 0xC0FFEE00;
    private const int KillsPerCase = 25;

    private static DiskGuestOptions Guest(DiskInterface iface)
    {
        var ops = new List<DiskOp>();
        for (int k = 0; k < Blocks; k++)
        {
            ops.Add(DiskOp.Write((ulong)(k * BlockSectors), BlockSectors, SeedBase + (ulong)k));
            ops.Add(DiskOp.Flush());
        }
        return new DiskGuestOptions { Interface = iface, Operations = ops, ChunkSectors = BlockSectors };
    }

    /// <summary>A csvmm run with its serial lines collected as they come, stopped by <paramref name="signal"/> after <paramref name="delay"/> (null: runs to the end).</summary>
    private static (List<string> Lines, int ExitCode, string Stderr) RunAndStop(string image, ScratchDisk disk, DiskInterface iface, bool cacheNone,
        TimeSpan? delay, int signal)
    {
        var psi = new ProcessStartInfo(CsvmmGuests.Binary) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in GuestRun.Csvmm(image, new DiskAttachment(disk.Path, iface, CacheNone: cacheNone), memoryMiB: 64)) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--timeout");
        psi.ArgumentList.Add("60");
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var lines = new List<string>();
        var output = Task.Run(() =>
        {
            string? line;
            while ((line = p.StandardOutput.ReadLine()) is not null) lock (lines) lines.Add(line);
        });
        var stderr = p.StandardError.ReadToEndAsync();
        if (delay is { } d && !p.WaitForExit(d))
        {
            if (signal == 9) p.Kill();
            else Assert.Equal(0, Kill(p.Id, signal));
        }
        Assert.True(p.WaitForExit(60_000), "csvmm did not exit");
        output.Wait(TimeSpan.FromSeconds(10));
        lock (lines) return (lines.ToList(), p.ExitCode, stderr.Result);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>The blocks the guest saw written (and, of those, flushed afterwards), from its serial lines.</summary>
    private static (HashSet<int> Written, HashSet<int> Flushed) Acknowledged(List<string> lines)
    {
        var written = new HashSet<int>();
        var flushed = new HashSet<int>();
        var pending = new List<int>();
        foreach (var line in lines)
        {
            if (WriteLine().Match(line) is { Success: true } m)
            {
                int block = int.Parse(m.Groups[1].Value) / BlockSectors;
                written.Add(block);
                pending.Add(block);
            }
            else if (line == "OK flush")
            {
                flushed.UnionWith(pending);
                pending.Clear();
            }
        }
        return (written, flushed);
    }

    /// <summary>The blocks of <paramref name="blocks"/> that are not on the image as the guest wrote them.</summary>
    private static List<int> Missing(ScratchDisk disk, IEnumerable<int> blocks)
    {
        byte[] image = File.ReadAllBytes(disk.Path);
        var missing = new List<int>();
        foreach (int k in blocks)
        {
            ulong lba = (ulong)(k * BlockSectors);
            var expected = DiskPattern.Sectors(lba, BlockSectors, SeedBase + (ulong)k);
            if (!image.AsSpan((int)lba * DiskPattern.SectorSize, expected.Length).SequenceEqual(expected)) missing.Add(k);
        }
        return missing;
    }

    [Theory]
    [InlineData(DiskInterface.Virtio, false)]
    [InlineData(DiskInterface.Virtio, true)]
    [InlineData(DiskInterface.IdeDma, false)]
    [InlineData(DiskInterface.IdeDma, true)]
    public void A_killed_csvmm_loses_no_flushed_write(DiskInterface iface, bool cacheNone)
    {
        string image = Path.Combine(Path.GetTempPath(), $"csvmm-crash-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(image, DiskGuest.Build(Guest(iface)));
        try
        {
            // A whole run first: it passes, and how long it takes sets the range of the kill moments.
            using (var whole = new ScratchDisk(4))
            {
                var clock = Stopwatch.StartNew();
                var (lines, code, stderr) = RunAndStop(image, whole, iface, cacheNone, null, 0);
                Assert.True(code == 0 && lines.Contains("PASS"), $"exit {code}: {string.Join('\n', lines.TakeLast(5))}\n{stderr}");
                Assert.Equal(Blocks, Acknowledged(lines).Flushed.Count);
                Assert.Empty(Missing(whole, Enumerable.Range(0, Blocks)));
                var span = clock.Elapsed;
                var random = new Random(Environment.TickCount);
                int partial = 0;
                for (int kill = 0; kill < KillsPerCase; kill++)
                {
                    using var disk = new ScratchDisk(4);
                    var at = TimeSpan.FromTicks((long)(span.Ticks * random.NextDouble()));
                    var (l, c, e) = RunAndStop(image, disk, iface, cacheNone, at, 9);
                    var (written, flushed) = Acknowledged(l);
                    if (flushed.Count is > 0 and < Blocks) partial++;
                    var lost = Missing(disk, flushed);
                    Assert.True(lost.Count == 0, $"kill {kill} at {at.TotalMilliseconds:0} ms (exit {c}): flushed blocks {string.Join(',', lost)} are not on the image; {flushed.Count} were acknowledged\n{e}");
                }
                // Most kills should land while the guest writes (not before the first flush or after the last).
                Assert.True(partial >= KillsPerCase / 4, $"only {partial} of {KillsPerCase} kills came while the guest was writing (run {span.TotalMilliseconds:0} ms)");
            }
        }
        finally
        {
            File.Delete(image);
        }
    }

    [Theory]
    [InlineData(DiskInterface.Virtio)]
    [InlineData(DiskInterface.IdeDma)]
    public void A_terminated_csvmm_keeps_every_completed_write_and_releases_the_image(DiskInterface iface)
    {
        string image = Path.Combine(Path.GetTempPath(), $"csvmm-term-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(image, DiskGuest.Build(Guest(iface)));
        try
        {
            for (int run = 0; run < 5; run++)
            {
                using var disk = new ScratchDisk(4);
                var (lines, code, stderr) = RunAndStop(image, disk, iface, false, TimeSpan.FromMilliseconds(150 + 60 * run), 15);
                var (written, _) = Acknowledged(lines);
                if (!lines.Contains("PASS")) Assert.True(code == 128 + 15, $"exit {code} after SIGTERM\n{stderr}");
                Assert.Empty(Missing(disk, written));
                // The image is free again: the same guest can run on it to the end.
                var (again, code2, stderr2) = RunAndStop(image, disk, iface, false, null, 0);
                Assert.True(code2 == 0 && again.Contains("PASS"), $"after SIGTERM the image could not be used again: exit {code2}\n{stderr2}");
            }
        }
        finally
        {
            File.Delete(image);
        }
    }

    [GeneratedRegex(@"^OK write lba=(\d+) sectors=\d+$")]
    private static partial Regex WriteLine();
}
