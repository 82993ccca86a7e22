using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Csvmm.TinyGuests;

/// <summary>A disk given to the VMM: the file, the controller it hangs off, and how it is opened.</summary>
/// <param name="Path">Raw image file.</param>
/// <param name="Interface">virtio-blk, or IDE (PIO and DMA use the same IDE disk).</param>
/// <param name="ReadOnly">readonly=on.</param>
/// <param name="CacheNone">cache=none (O_DIRECT) instead of the default writeback.</param>
public sealed record DiskAttachment(string Path, DiskInterface Interface, bool ReadOnly = false, bool CacheNone = false)
{
    /// <summary>QEMU's word for the controller and csvmm's <c>if=</c> value.</summary>
    public bool IsIde => Interface is DiskInterface.IdePio or DiskInterface.IdeDma;
}

/// <summary>One COM1 line and when the host saw its newline (from the process start).</summary>
public readonly record struct SerialLine(TimeSpan At, string Text);

/// <summary>What one VMM run of a tiny guest produced.</summary>
public sealed record GuestRunResult(string Vmm, int ExitCode, bool TimedOut, IReadOnlyList<SerialLine> Lines, string Stderr, TimeSpan Elapsed, string CommandLine)
{
    /// <summary>All serial output, lines joined with '\n'.</summary>
    public string Serial => string.Join('\n', Lines.Select(l => l.Text));

    /// <summary>The guest printed PASS and no FAIL line.</summary>
    public bool Passed => Lines.Any(l => l.Text == "PASS") && !Lines.Any(l => l.Text.StartsWith("FAIL", StringComparison.Ordinal));

    /// <summary>The first line starting with <paramref name="prefix"/>, or null.</summary>
    public string? LineStartingWith(string prefix) => Lines.FirstOrDefault(l => l.Text.StartsWith(prefix, StringComparison.Ordinal)).Text;

    /// <summary>Host time between the lines <paramref name="start"/> and <paramref name="end"/> (prefix match), or null.</summary>
    public TimeSpan? Between(string start, string end)
    {
        int s = Lines.ToList().FindIndex(l => l.Text.StartsWith(start, StringComparison.Ordinal));
        int e = Lines.ToList().FindIndex(l => l.Text.StartsWith(end, StringComparison.Ordinal));
        return s >= 0 && e > s ? Lines[e].At - Lines[s].At : null;
    }

    /// <summary>Everything, for an assertion message.</summary>
    public string Describe() =>
        $"{Vmm}: exit code {ExitCode}{(TimedOut ? " (timed out, killed)" : "")}, {Elapsed.TotalSeconds:0.00} s{Environment.NewLine}" +
        $"command: {CommandLine}{Environment.NewLine}serial:{Environment.NewLine}{Serial}{Environment.NewLine}stderr:{Environment.NewLine}{Stderr}";
}

/// <summary>
/// Boots a tiny-guest BIOS image in a VMM process and captures COM1 (the process's stdout) line by line with host
/// timestamps. <see cref="Qemu"/> and <see cref="Csvmm"/> build the two command lines; <see cref="Run"/> starts any.
/// </summary>
public static class GuestRun
{
    /// <summary>QEMU's binary (on PATH).</summary>
    public const string QemuBinary = "qemu-system-x86_64";

    /// <summary>
    /// QEMU 7.2 with KVM: <c>-M pc</c> (PIIX3 IDE at 00:01.1), the image as <c>-bios</c>, isa-debug-exit at 0xf4, COM1 on
    /// stdio, no default devices. virtio-blk is the modern-only <c>virtio-blk-pci,disable-legacy=on</c> (1af4:1042);
    /// IDE is <c>ide-hd</c> on the primary master. cache=none pairs with aio=threads (what csvmm's cache=none compares with).
    /// </summary>
    public static IReadOnlyList<string> Qemu(string image, DiskAttachment? disk, int memoryMiB = 512)
    {
        var args = new List<string>
        {
            "-enable-kvm", "-M", "pc", "-m", memoryMiB.ToString(CultureInfo.InvariantCulture), "-bios", image,
            "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio", "-monitor", "none",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
        };
        if (disk is not null)
        {
            string cache = disk.CacheNone ? "cache=none,aio=threads" : "cache=writeback";
            args.Add("-drive");
            args.Add($"file={EscapeComma(disk.Path)},if=none,id=d0,format=raw,{cache}{(disk.ReadOnly ? ",readonly=on" : "")}");
            args.Add("-device");
            args.Add(disk.IsIde ? "ide-hd,drive=d0,bus=ide.0,unit=0" : "virtio-blk-pci,drive=d0,disable-legacy=on");
        }
        return args;
    }

    /// <summary>csvmm: <c>--firmware IMG --memory NM --disk PATH,if=virtio|ide[,readonly=on][,cache=none] --serial stdio</c>.</summary>
    public static IReadOnlyList<string> Csvmm(string image, DiskAttachment? disk, int memoryMiB = 512)
    {
        var args = new List<string> { "--firmware", image, "--memory", $"{memoryMiB}M", "--serial", "stdio" };
        if (disk is not null)
        {
            args.Add("--disk");
            args.Add($"{disk.Path},if={(disk.IsIde ? "ide" : "virtio")}{(disk.ReadOnly ? ",readonly=on" : "")}{(disk.CacheNone ? ",cache=none" : "")}");
        }
        return args;
    }

    /// <summary>The guest passed: QEMU's isa-debug-exit code for <c>out 0xf4, 0</c> is 1; csvmm's S5 power-off is 0.</summary>
    public static int ExpectedPassExitCode(string vmm) => vmm == QemuBinary || vmm.EndsWith("/" + QemuBinary, StringComparison.Ordinal) ? 1 : 0;

    /// <summary>
    /// Runs <paramref name="fileName"/> with <paramref name="arguments"/>, stdin from /dev/null, stdout read as COM1 lines,
    /// stderr kept; kills the process after <paramref name="timeout"/>.
    /// </summary>
    public static GuestRunResult Run(string fileName, IReadOnlyList<string> arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.Latin1,
        };
        foreach (string arg in arguments) start.ArgumentList.Add(arg);
        string commandLine = fileName + " " + string.Join(' ', arguments.Select(a => a.Contains(' ', StringComparison.Ordinal) ? $"'{a}'" : a));

        var lines = new List<SerialLine>();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {fileName}");
        process.StandardInput.Close();
        Task errors = Task.Run(() => stderr.Append(process.StandardError.ReadToEnd()));
        Task output = Task.Run(() =>
        {
            // Byte by byte, so a line's timestamp is when its newline arrived (no read-ahead buffering delays it).
            Stream stdout = process.StandardOutput.BaseStream;
            var line = new StringBuilder();
            var buffer = new byte[4096];
            int n;
            while ((n = stdout.Read(buffer, 0, buffer.Length)) > 0)
            {
                TimeSpan at = clock.Elapsed;
                for (int i = 0; i < n; i++)
                {
                    char c = (char)buffer[i];
                    if (c == '\n')
                    {
                        lock (lines) lines.Add(new SerialLine(at, line.ToString().TrimEnd('\r')));
                        line.Clear();
                    }
                    else line.Append(c);
                }
            }
            if (line.Length > 0) lock (lines) lines.Add(new SerialLine(clock.Elapsed, line.ToString()));
        });

        bool exited = process.WaitForExit(timeout);
        if (!exited)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            process.WaitForExit();
        }
        clock.Stop();
        Task.WaitAll([output, errors], TimeSpan.FromSeconds(10));
        lock (lines)
            return new GuestRunResult(fileName, exited ? process.ExitCode : -1, !exited, lines.ToArray(), stderr.ToString(), clock.Elapsed, commandLine);
    }

    /// <summary>Runs <paramref name="image"/> under QEMU with <paramref name="disk"/>.</summary>
    public static GuestRunResult RunQemu(byte[] image, DiskAttachment? disk, TimeSpan timeout, int memoryMiB = 512)
    {
        string path = Path.Combine(Path.GetTempPath(), $"csvmm-diskguest-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, image);
        try
        {
            return Run(QemuBinary, Qemu(path, disk, memoryMiB), timeout);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string EscapeComma(string path) => path.Replace(",", ",,", StringComparison.Ordinal);
}
