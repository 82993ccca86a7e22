using Csvmm.Control;
using Csvmm.Security;

namespace Csvmm.Cli;

/// <summary>
/// SELinux on every QMP command: the command's operation class (query for read-only commands, control for run-state
/// changes) is a permission of class vm, decided by the VM's <see cref="ManagementGate"/> from the client's context to
/// the VM's. The client's context is the socket peer's (getpeercon) on an SELinux host; on a host without SELinux
/// there is no kernel label to read, and the client (the socket is 0600: the same user) is taken to act in csvmm's own
/// context. An unknown client context on an SELinux host is a denial. AVC lines are logged as the disk gate logs them.
/// </summary>
internal sealed class QmpAuthorizer(ManagementGate gate, string? fallbackContext, Serilog.ILogger log) : IQmpAuthorizer
{
    /// <summary>The operation a QMP command is, for MAC.</summary>
    public static VmOperation OperationFor(string command, string? target = null) => command switch
    {
        "stop" or "cont" or "system_reset" or "system_powerdown" or "quit" or "migrate_cancel" => VmOperation.Control,
        // To a file: a save (a snapshot on this host); anywhere else: the running VM leaves for another csvmm.
        "migrate" => target is not null && target.StartsWith("file:", StringComparison.Ordinal) ? VmOperation.Save : VmOperation.MigrateOut,
        _ => VmOperation.Query,
    };

    public string? Check(QmpPeer peer, string command, string? target)
    {
        var operation = OperationFor(command, target);
        string permission = ManagementGate.PermissionFor(operation);
        string? client = peer.Context ?? fallbackContext;
        if (client is null)
        {
            string why = $"SELinux: the QMP client's (pid {peer.Pid}) security context is unknown: {{ {permission} }} denied";
            if (gate.Mode == EnforcementMode.Enforcing) { log.Error("{Why}", why); return why; }
            log.Warning("SELinux (permissive): {Why}", why);
            return null;
        }
        var d = gate.Check(client, operation, $"qmp:{command}");
        Log(d);
        return d.Allowed ? null : $"SELinux denied {{ {permission} }} on the VM {gate.VmContext} to {client}: {d.DenialReason}";
    }

    /// <summary>
    /// Before <c>migrate</c> writes a snapshot: may csvmm write a file of the path's label (see
    /// <see cref="ManagementGate.CheckSnapshotWrite"/>). Returns the QMP error text, or null to go on.
    /// </summary>
    public string? CheckSnapshotWrite(string path)
    {
        var d = gate.CheckSnapshotWrite(path);
        Log(d);
        if (d.Allowed) return null;
        if (d.AvcLine is null) log.Error("SELinux: {Reason}", d.DenialReason);
        return $"SELinux denied writing the snapshot {path}: {d.DenialReason}";
    }

    private void Log(ManagementDecision d)
    {
        if (d.AvcLine is null) return;
        if (d.PolicyAllows) log.Debug("{Avc}", d.AvcLine);
        else if (d.Allowed) log.Warning("{Avc}", d.AvcLine);
        else log.Error("{Avc}", d.AvcLine);
    }
}
