namespace Csvmm.Security;

/// <summary>Facts about csvmm's standalone policy (policy/standalone/base.cil + policy/csvmm.cil).</summary>
public static class StandalonePolicy
{
    /// <summary>The process context assumed on a host without SELinux when none is given: the RFC's unprivileged user domain.</summary>
    public const string DefaultProcessContext = "user_u:user_r:user_t";

    /// <summary>The file name policy/build.sh gives the compiled policy.</summary>
    public const string PolicyFileName = "policy.33";

    /// <summary>The file name policy/build.sh gives the copied file_contexts.</summary>
    public const string FileContextsFileName = "file_contexts";
}
