namespace Csvmm.Security;

/// <summary>
/// The parts of an SELinux security context string <c>user:role:type[:level]</c>. Parsing checks
/// the shape only; whether the parts exist in a policy is the engine's question
/// (<see cref="IPolicyEngine.GetSid"/>).
/// </summary>
/// <param name="User">SELinux user, e.g. <c>user_u</c>.</param>
/// <param name="Role">Role, e.g. <c>user_r</c>; objects carry <c>object_r</c>.</param>
/// <param name="Type">Type (domain of a process), e.g. <c>user_t</c>.</param>
/// <param name="Level">MLS/MCS level or range (may itself contain ':'), or null in a policy without MLS.</param>
public readonly record struct SecurityContext(string User, string Role, string Type, string? Level)
{
    /// <summary>Longest context accepted (the kernel's limit for a context is a page).</summary>
    public const int MaxLength = 4095;

    /// <summary>Parses <paramref name="context"/>, or throws <see cref="SecurityPolicyException"/> (<see cref="PolicyErrorKind.InvalidContext"/>).</summary>
    public static SecurityContext Parse(string context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (TryParse(context, out var parsed))
            return parsed;
        throw new SecurityPolicyException(PolicyErrorKind.InvalidContext,
            $"invalid security context '{AvcFormat.Printable(context)}': {ShapeError(context)}");
    }

    /// <summary>Parses <paramref name="context"/>; false when it is not shaped like a context.</summary>
    public static bool TryParse(string? context, out SecurityContext parsed)
    {
        parsed = default;
        if (context is null || ShapeError(context) is not null)
            return false;
        string[] parts = context.Split(':', 4);
        parsed = new SecurityContext(parts[0], parts[1], parts[2], parts.Length == 4 ? parts[3] : null);
        return true;
    }

    /// <summary>Null for a well-shaped context, else what is wrong with it (one line).</summary>
    internal static string? ShapeError(string context)
    {
        if (context.Length == 0)
            return "empty";
        if (context.Length > MaxLength)
            return $"longer than {MaxLength} characters";
        foreach (char c in context)
            if (c is < '!' or > '~')
                return "contains whitespace, control or non-ASCII characters";
        string[] parts = context.Split(':', 4);
        if (parts.Length < 3)
            return "expected user:role:type[:level]";
        if (parts[0].Length == 0 || parts[1].Length == 0 || parts[2].Length == 0 || (parts.Length == 4 && parts[3].Length == 0))
            return "empty user, role, type or level";
        return null;
    }

    /// <inheritdoc/>
    public override string ToString() => Level is null ? $"{User}:{Role}:{Type}" : $"{User}:{Role}:{Type}:{Level}";
}
