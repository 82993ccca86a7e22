using Csvmm.Devices;
using Serilog;

namespace Csvmm.Machine;

/// <summary>
/// Runs a guest across resets: each reset builds a fresh <see cref="VirtualMachine"/> (as a power cycle
/// would), unless --no-reboot asked to stop there. Host-side stop requests (signals, Ctrl-A x) and serial
/// input are routed to whichever VM is current.
/// </summary>
public sealed class MachineRunner
{
    private readonly MachineConfig _config;
    private readonly ILogger _log;
    private readonly ISerialOutput _serialOut;
    private volatile VirtualMachine? _current;
    private VmOutcome? _pendingStop;
    private readonly object _lock = new();

    public MachineRunner(MachineConfig config, ILogger log, ISerialOutput serialOut)
    {
        _config = config;
        _log = log;
        _serialOut = serialOut;
    }

    /// <summary>Number of VM builds (1 + resets).</summary>
    public int Boots { get; private set; }

    public VmOutcome Run()
    {
        DateTime? deadline = _config.Timeout is { } t ? DateTime.UtcNow + t : null;
        while (true)
        {
            using var vm = VirtualMachine.Create(_config, _log, _serialOut);
            Boots++;
            lock (_lock)
            {
                _current = vm;
                if (_pendingStop is not null) vm.RequestStop(_pendingStop);
            }
            TimeSpan? left = deadline is { } d ? (d - DateTime.UtcNow) is var l && l > TimeSpan.Zero ? l : TimeSpan.Zero : null;
            var outcome = vm.Run(left);
            if (outcome.Kind == VmExitKind.Timeout && _config.Timeout is { } total)
                outcome = outcome with { Reason = $"timeout after {total.TotalSeconds:0.#} s" };
            lock (_lock) _current = null;
            _log.Information("VM stopped: {Kind} ({Reason}); {Exits} exits", outcome.Kind, outcome.Reason, vm.TotalExits);
            if (outcome.Kind == VmExitKind.Reset && !_config.NoReboot)
            {
                _log.Information("guest reset: rebooting");
                continue;
            }
            return outcome;
        }
    }

    /// <summary>Stops the current VM (or the next one, if called between boots). Any thread.</summary>
    public void RequestStop(VmOutcome outcome)
    {
        lock (_lock)
        {
            _pendingStop ??= outcome;
            _current?.RequestStop(outcome);
        }
    }

    /// <summary>Delivers host input to the current VM's COM1; returns bytes accepted, or -1 when no VM will take any more.</summary>
    public int SerialInput(ReadOnlySpan<byte> data)
    {
        var vm = _current;
        if (vm is null) return _pendingStop is null ? 0 : -1;
        return vm.Platform.SerialInput(data);
    }
}
