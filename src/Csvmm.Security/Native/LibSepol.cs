using System.Runtime.InteropServices;

namespace Csvmm.Security.Native;

/// <summary>
/// <c>struct sepol_av_decision</c> from &lt;sepol/policydb/flask_types.h&gt;: five uint32, 20 bytes
/// (libselinux's <c>struct av_decision</c> adds a flags word: 24 bytes; do not mix them up).
/// Layout proven against the real header by a test that compiles C with gcc.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SepolAvDecision
{
    public uint Allowed;
    public uint Decided;
    public uint AuditAllow;
    public uint AuditDeny;
    public uint SeqNo;
}

/// <summary>
/// libsepol.so.2 (&gt;= 3.4) entry points, 1:1. libsepol keeps ONE global policydb and SID table
/// with no locking: every call must hold <see cref="SepolEngine"/>'s global lock.
/// Return values: 0 on success; -1 (STATUS_ERR, errno unset) or a negative errno on failure.
/// </summary>
internal static unsafe partial class LibSepol
{
    private const string Lib = "libsepol.so.2";

    /// <summary>SEPOL_COMPUTEAV_* reason bits.</summary>
    internal const uint ComputeAvTe = 0x1, ComputeAvCons = 0x2, ComputeAvRbac = 0x4, ComputeAvBounds = 0x8;

    /// <summary>void sepol_debug(int on): 0 silences libsepol's default stderr messages.</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_debug")]
    internal static partial void Debug(int on);

    /// <summary>int sepol_set_policydb_from_file(FILE *fp): replaces the global policy and resets the SID table.</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_set_policydb_from_file")]
    internal static partial int SetPolicydbFromFile(nint file);

    /// <summary>int sepol_context_to_sid(const char *ctx, size_t len, sepol_security_id_t *sid).</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_context_to_sid")]
    internal static partial int ContextToSid(byte* context, nuint length, uint* sid);

    /// <summary>int sepol_sid_to_context(sid, char **ctx /* malloc'd */, size_t *len /* includes the NUL */).</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_sid_to_context")]
    internal static partial int SidToContext(uint sid, byte** context, nuint* length);

    /// <summary>int sepol_string_to_security_class(const char *name, sepol_security_class_t *tclass).</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_string_to_security_class")]
    internal static partial int StringToSecurityClass(byte* name, ushort* securityClass);

    /// <summary>int sepol_string_to_av_perm(sepol_security_class_t tclass, const char *perm, sepol_access_vector_t *av).</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_string_to_av_perm")]
    internal static partial int StringToAvPerm(ushort securityClass, byte* permission, uint* av);

    /// <summary>
    /// int sepol_compute_av_reason_buffer(ssid, tsid, tclass, requested, struct sepol_av_decision *avd,
    /// unsigned int *reason, char **reason_buf /* malloc'd or NULL */, unsigned int flags).
    /// </summary>
    [LibraryImport(Lib, EntryPoint = "sepol_compute_av_reason_buffer")]
    internal static partial int ComputeAvReasonBuffer(
        uint ssid, uint tsid, ushort securityClass, uint requested,
        SepolAvDecision* decision, uint* reason, byte** reasonBuffer, uint flags);

    /// <summary>int sepol_change_sid(ssid, tsid, tclass, sepol_security_id_t *out): evaluates type_change rules.</summary>
    [LibraryImport(Lib, EntryPoint = "sepol_change_sid")]
    internal static partial int ChangeSid(uint ssid, uint tsid, ushort securityClass, uint* outSid);
}
