using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>
/// An in-memory policy with SELinux's semantics for what the gate asks: allow rules by
/// (source type, target type, class) and type_change rules; contexts are interned as SIDs.
/// </summary>
public sealed class FakePolicyEngine : IPolicyEngine
{
    private readonly Dictionary<string, string[]> _classes = new()
    {
        ["file"] = ["write", "getattr", "read", "open"],     // bit order differs from the real policy on purpose
        ["vm"] = ["save", "entrypoint", "restore", "migrate_out", "migrate_in", "control", "query"],
    };
    private readonly Dictionary<(string Source, string Target, string Class), HashSet<string>> _allow = [];
    private readonly Dictionary<(string Source, string Target), string> _typeChange = [];
    private readonly List<string> _contexts = [""];
    private const uint Epoch = 77;

    public string Description => "fake policy";

    /// <summary>Throw this from every call, when set.</summary>
    public SecurityPolicyException? FailWith { get; set; }
    /// <summary>Causes reported for denials.</summary>
    public DenialCauses DenialCauses { get; set; } = DenialCauses.TypeEnforcement;
    public int Calls { get; private set; }

    public FakePolicyEngine Allow(string source, string target, string cls, params string[] perms)
    {
        if (!_allow.TryGetValue((source, target, cls), out var set))
            _allow[(source, target, cls)] = set = [];
        set.UnionWith(perms);
        return this;
    }

    public FakePolicyEngine TypeChange(string process, string disk, string vm)
    {
        _typeChange[(process, disk)] = vm;
        return this;
    }

    public FakePolicyEngine WithoutClass(string name)
    {
        _classes.Remove(name);
        return this;
    }

    public SecurityClass GetClass(string name)
    {
        Enter();
        int index = _classes.Keys.ToList().IndexOf(name);
        if (index < 0)
            throw new SecurityPolicyException(PolicyErrorKind.UnknownClass, $"fake policy has no class '{name}'");
        return new SecurityClass(name, (ushort)(index + 1), Epoch);
    }

    public uint GetPermission(SecurityClass securityClass, string permission)
    {
        Enter();
        int index = Array.IndexOf(_classes[securityClass.Name], permission);
        if (index < 0)
            throw new SecurityPolicyException(PolicyErrorKind.UnknownPermission, $"no permission {permission}");
        return 1u << index;
    }

    public SecurityId GetSid(string context)
    {
        Enter();
        if (!SecurityContext.TryParse(context, out _))
            throw new SecurityPolicyException(PolicyErrorKind.InvalidContext, $"invalid security context '{context}'");
        int index = _contexts.IndexOf(context);
        if (index < 0)
        {
            _contexts.Add(context);
            index = _contexts.Count - 1;
        }
        return new SecurityId((uint)index, Epoch);
    }

    public string GetContext(SecurityId sid)
    {
        Enter();
        return _contexts[(int)sid.Value];
    }

    public AccessDecision ComputeAccess(SecurityId source, SecurityId target, SecurityClass securityClass, uint requested)
    {
        Enter();
        string s = SecurityContext.Parse(_contexts[(int)source.Value]).Type, t = SecurityContext.Parse(_contexts[(int)target.Value]).Type;
        uint allowed = 0;
        if (_allow.TryGetValue((s, t, securityClass.Name), out var perms))
            foreach (string p in perms)
                allowed |= 1u << Array.IndexOf(_classes[securityClass.Name], p);
        bool denied = (requested & ~allowed) != 0;
        return new AccessDecision(allowed, uint.MaxValue, 0, uint.MaxValue, 1, denied ? DenialCauses : DenialCauses.None,
            denied && DenialCauses == DenialCauses.Constraint ? "constraint (u1 == u2)" : null);
    }

    public SecurityId ComputeTypeChange(SecurityId source, SecurityId target, SecurityClass securityClass)
    {
        Enter();
        var s = SecurityContext.Parse(_contexts[(int)source.Value]);
        var t = SecurityContext.Parse(_contexts[(int)target.Value]);
        string type = _typeChange.TryGetValue((s.Type, t.Type), out var vm) ? vm : t.Type;
        return GetSid($"{s.User}:object_r:{type}");
    }

    private void Enter()
    {
        Calls++;
        if (FailWith is not null)
            throw FailWith;
    }
}
