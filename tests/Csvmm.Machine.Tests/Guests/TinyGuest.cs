using System.Diagnostics;
using System.Text;
using Csvmm.Devices;
using Serilog;

using Csvmm.TestSupport;

using Csvmm.TinyGuests;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>What one run of a tiny guest produced.</summary>
/// <param name="Outcome">Why the machine stopped.</param>
/// <param name="Serial">Every byte the guest wrote to COM1, as Latin-1 text.</param>
/// <param name="Boots">Number of VM builds (1 + resets that rebooted).</param>
/// <param name="Elapsed">Wall time of <see cref="MachineRunner.Run"/>.</param>
/// <param name="Machines">Every VM the runner built (disposed by now; for their vCPU threads and counters).</param>
public sealed record GuestRun(VmOutcome Outcome, string Serial, int Boots, TimeSpan Elapsed, IReadOnlyList<VirtualMachine> Machines);

/// <summary>
/// Runs a firmware image built by <see cref="FirmwareImage"/> through csvmm's real machine: the image goes to a
/// temp file, <see cref="MachineRunner"/> boots it from the reset vector with 32 MiB of RAM, and COM1 is captured.
/// </summary>
public static class TinyGuest
{
    public const string DevKvm = "/dev/kvm";
    public const ulong MemoryBytes = 32UL << 20;

    /// <summary>These tests need KVM: on a host without it they fail with this message rather than skip.</summary>
    public static void RequireKvm() => HostRequirements.RequireKvm("csvmm's machine tests boot real guests");

    public static GuestRun Run(byte[] image, int cpus = 1, bool noReboot = true, TimeSpan? timeout = null,
        Action<VirtualMachine>? extraDevices = null, ulong memoryBytes = MemoryBytes)
    {
        RequireKvm();
        string path = Path.Combine(Path.GetTempPath(), $"csvmm-tiny-{Environment.ProcessId}-{Guid.NewGuid():N}.fd");
        File.WriteAllBytes(path, image);
        try
        {
            var machines = new List<VirtualMachine>();
            var serial = new CollectingSerial();
            var config = new MachineConfig
            {
                Firmware = path,
                MemoryBytes = memoryBytes,
                Cpus = cpus,
                NoReboot = noReboot,
                Timeout = timeout ?? TimeSpan.FromSeconds(60),
                ExtraDevices = vm =>
                {
                    machines.Add(vm);
                    extraDevices?.Invoke(vm);
                },
            };
            ILogger log = new LoggerConfiguration().CreateLogger();
            var runner = new MachineRunner(config, log, serial);
            var clock = Stopwatch.StartNew();
            VmOutcome outcome = runner.Run();
            clock.Stop();
            return new GuestRun(outcome, serial.Text, runner.Boots, clock.Elapsed, machines);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A failure message that shows everything the run produced.</summary>
    public static string Describe(this GuestRun run) =>
        $"outcome {run.Outcome.Kind} ({run.Outcome.Reason}), serial \"{run.Serial}\", boots {run.Boots}, {run.Elapsed.TotalSeconds:0.00} s" +
        (run.Outcome.Report is { } r ? Environment.NewLine + r : "");
}

/// <summary>COM1 sink that keeps every byte (thread-safe: two vCPUs may print).</summary>
public sealed class CollectingSerial : ISerialOutput
{
    private readonly Lock _lock = new();
    private readonly List<byte> _bytes = [];

    public void Write(byte value)
    {
        lock (_lock) _bytes.Add(value);
    }

    public string Text
    {
        get { lock (_lock) return Encoding.Latin1.GetString(_bytes.ToArray()); }
    }
}
