using Csvmm.Block;
using Csvmm.Security;

namespace Csvmm.Cli;

/// <summary>
/// <c>csvmm check</c>: runs the SELinux entrypoint gate exactly as <c>csvmm --disk</c> would (same
/// O_PATH open, labels, policy and mode) and prints, per disk, the three answers, the AVC lines and
/// the VM context, then the VM's verdict. No VM is created and no disk is opened for reading or writing.
/// The exit code reports the policy's decision: 0 when it allows, 6 when it denies (in every mode
/// but disabled, so permissive mode shows what enforcing would refuse), 3 for a path that cannot be a disk.
/// </summary>
public static class CheckCommand
{
    /// <summary>Runs the check, writing the report to <paramref name="stdout"/> and errors to <paramref name="stderr"/>.</summary>
    public static int Run(CheckOptions options, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(options);
        GateOutcome outcome;
        try
        {
            // The report is the output: the gate's own log lines would only repeat it.
            outcome = new DiskGate(options.Security, Serilog.Core.Logger.None).Admit(options.Disks);
        }
        catch (DiskException e)
        {
            stderr.WriteLine($"csvmm: {e.Message}");
            return ExitCodes.BadInput;
        }
        using (outcome)
        {
            stdout.WriteLine($"selinux:    {outcome.Plan.Explanation}");
            if (outcome.Decision is not { } vm)
            {
                if (outcome.Refusal is { } refusal)
                {
                    stdout.WriteLine($"vm:         DENIED: {refusal}");
                    stderr.WriteLine($"csvmm: {refusal}");
                    return ExitCodes.Denied;
                }
                stdout.WriteLine("vm:         not checked (SELinux checks disabled)");
                return ExitCodes.Ok;
            }
            foreach (var disk in vm.Disks)
            {
                stdout.WriteLine();
                foreach (string line in disk.Describe())
                    stdout.WriteLine(line);
                foreach (string avc in disk.AvcLines)
                    stdout.WriteLine(avc);
            }
            stdout.WriteLine();
            if (outcome.Management is { } management && outcome.ProcessContext is { } self)
            {
                // What this process could do to the running VM (QMP commands, save, migration), one line per permission.
                foreach (var op in Enum.GetValues<VmOperation>())
                {
                    var d = management.Check(self, op, "check");
                    stdout.WriteLine($"manage:     {ManagementGate.PermissionFor(op),-11} {(d.PolicyAllows ? "granted" : "denied: " + d.DenialReason)}");
                }
            }
            if (vm.PolicyAllows)
            {
                stdout.WriteLine($"vm:         {vm.VmContext} (allowed)");
                return ExitCodes.Ok;
            }
            string mode = vm.Mode == EnforcementMode.Enforcing ? "" : $" (would be refused in enforcing mode; {vm.Mode.ToString().ToLowerInvariant()} now)";
            stdout.WriteLine($"vm:         DENIED: {vm.DenialReason}{mode}");
            return ExitCodes.Denied;
        }
    }
}
