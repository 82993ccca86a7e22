using System.Runtime.InteropServices;
using System.Text;
using Csvmm.Security.Native;
using Csvmm.TestSupport;

namespace Csvmm.Security.Tests;

/// <summary>The C# mirrors of C structs, proven against the real headers with gcc.</summary>
public sealed class NativeLayoutTests
{
    [Fact]
    public void Structs_match_the_c_headers()
    {
        var c = new StringBuilder("""
            #include <stddef.h>
            #include <sepol/policydb/flask_types.h>

            """);
        void Size<T>(string cType) => c.AppendLine($"_Static_assert(sizeof({cType}) == {Marshal.SizeOf<T>()}, \"sizeof {cType}\");");
        void Offset<T>(string cType, string cField, string field) =>
            c.AppendLine($"_Static_assert(offsetof({cType}, {cField}) == {Marshal.OffsetOf<T>(field)}, \"{cType}.{cField}\");");

        Size<SepolAvDecision>("struct sepol_av_decision");
        Offset<SepolAvDecision>("struct sepol_av_decision", "allowed", nameof(SepolAvDecision.Allowed));
        Offset<SepolAvDecision>("struct sepol_av_decision", "decided", nameof(SepolAvDecision.Decided));
        Offset<SepolAvDecision>("struct sepol_av_decision", "auditallow", nameof(SepolAvDecision.AuditAllow));
        Offset<SepolAvDecision>("struct sepol_av_decision", "auditdeny", nameof(SepolAvDecision.AuditDeny));
        Offset<SepolAvDecision>("struct sepol_av_decision", "seqno", nameof(SepolAvDecision.SeqNo));
        c.AppendLine("#include <sepol/policydb/services.h>");
        c.AppendLine($"_Static_assert(SEPOL_COMPUTEAV_TE == {LibSepol.ComputeAvTe} && SEPOL_COMPUTEAV_CONS == {LibSepol.ComputeAvCons} && " +
                     $"SEPOL_COMPUTEAV_RBAC == {LibSepol.ComputeAvRbac} && SEPOL_COMPUTEAV_BOUNDS == {LibSepol.ComputeAvBounds}, \"reasons\");");

        Gcc.AssertCompiles(c.ToString(), "the libsepol layout checks");
    }

    [Fact]
    public void Reason_bits_are_libsepols()
    {
        Assert.Equal((uint)DenialCauses.TypeEnforcement, LibSepol.ComputeAvTe);
        Assert.Equal((uint)DenialCauses.Constraint, LibSepol.ComputeAvCons);
        Assert.Equal((uint)DenialCauses.Rbac, LibSepol.ComputeAvRbac);
        Assert.Equal((uint)DenialCauses.Bounds, LibSepol.ComputeAvBounds);
    }
}
