namespace Csvmm.Cli;

/// <summary>csvmm's documented process exit codes (README "Exit codes").</summary>
public static class ExitCodes
{
    /// <summary>The guest powered off (or reset with --no-reboot), or the user quit with Ctrl-A x.</summary>
    public const int Ok = 0;
    /// <summary>An unexpected internal error in csvmm.</summary>
    public const int Internal = 1;
    /// <summary>Bad command line: unknown option, invalid value, conflicting options.</summary>
    public const int Usage = 2;
    /// <summary>A kernel, initrd, firmware or disk file is missing, unreadable or malformed.</summary>
    public const int BadInput = 3;
    /// <summary>KVM is missing, lacks a capability, or an ioctl failed.</summary>
    public const int Kvm = 4;
    /// <summary>The guest crashed: triple fault, emulation failure, entry failure.</summary>
    public const int GuestCrashed = 5;
    /// <summary>The SELinux entrypoint check denied a disk (enforcing mode).</summary>
    public const int Denied = 6;
    /// <summary>--timeout expired before the guest ended.</summary>
    public const int Timeout = 7;
    /// <summary>Terminated by a signal: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).</summary>
    public const int SignalBase = 128;

    /// <summary>The exit code for a --selinux-transition failure.</summary>
    public static int ForTransition(Csvmm.Security.TransitionFailureKind kind) => kind switch
    {
        Csvmm.Security.TransitionFailureKind.Usage => Usage,
        Csvmm.Security.TransitionFailureKind.Denied => Denied,
        _ => Internal,
    };
}
