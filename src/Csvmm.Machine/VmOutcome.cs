namespace Csvmm.Machine;

/// <summary>Why a VM stopped running.</summary>
public enum VmExitKind
{
    /// <summary>The guest powered off (ACPI S5).</summary>
    PowerOff,
    /// <summary>The guest asked for a platform reset (i8042, 0xCF9, ACPI reset register).</summary>
    Reset,
    /// <summary>The guest crashed: triple fault, emulation failure, entry failure, unknown exit.</summary>
    Crashed,
    /// <summary>KVM itself failed (an ioctl on the run path).</summary>
    KvmError,
    /// <summary>The user quit (Ctrl-A x).</summary>
    UserQuit,
    /// <summary>csvmm received SIGINT/SIGTERM.</summary>
    Signal,
    /// <summary>--timeout expired.</summary>
    Timeout,
}

/// <summary>The result of one VM run. <see cref="Report"/> holds the crash report for <see cref="VmExitKind.Crashed"/>.</summary>
public sealed record VmOutcome(VmExitKind Kind, string Reason, string? Report = null, int SignalNumber = 0);
