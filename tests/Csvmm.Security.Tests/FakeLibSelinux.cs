using System.Runtime.InteropServices;
using System.Text;
using Csvmm.Security.Native;

namespace Csvmm.Security.Tests;

/// <summary>
/// A fake native layer behind <see cref="ILibSelinux"/>: a tiny "kernel policy" (classes, valid contexts, allow and
/// type_change rules, permissive domains) with the C calling conventions of libselinux — it reads the caller's
/// strings as raw NUL-terminated bytes (recording them), hands out contexts in native memory that must come back
/// through <see cref="Freecon"/>, and reports failures as -1/0 plus errno. Every call is recorded.
/// </summary>
internal sealed unsafe class FakeLibSelinux : ILibSelinux, IDisposable
{
    public const int EPERM = 1, ENOENT = 2, EBADF = 9, ENOMEM = 12, EACCES = 13, EINVAL = 22, ENODATA = 61;

    private readonly Dictionary<string, string[]> _classes = new()
    {
        ["file"] = ["ioctl", "read", "write", "create", "getattr", "setattr", "lock", "relabelfrom", "relabelto", "append", "map", "unlink", "link", "rename", "execute", "open"],
        ["process"] = ["fork", "transition"],
        ["vm"] = ["entrypoint", "save", "restore", "migrate_out", "migrate_in", "control", "query"],
    };
    private readonly HashSet<string> _validContexts = new(StringComparer.Ordinal);
    private readonly Dictionary<(string S, string T, string C), HashSet<string>> _allow = [];
    private readonly Dictionary<(string S, string T, string C), string> _typeChange = [];
    private readonly HashSet<string> _permissiveTypes = new(StringComparer.Ordinal);
    private readonly HashSet<nint> _outstanding = [];
    [ThreadStatic] private static int t_errno;

    /// <summary>Every call, as "name(arg, arg)" with strings decoded from the exact bytes passed.</summary>
    public List<string> Calls { get; } = [];
    /// <summary>Raw bytes of every string argument received, including the terminating NUL.</summary>
    public List<byte[]> RawStrings { get; } = [];
    /// <summary>Pointers freed through freecon, in order.</summary>
    public List<nint> Freed { get; } = [];
    /// <summary>Contexts handed out and not freed yet.</summary>
    public int Outstanding => _outstanding.Count;

    public int Enabled { get; set; } = 1;
    public int Enforce { get; set; } = 1;
    public int EnforceErrno { get; set; } = ENOENT;
    public string? CurrentContext { get; set; } = "user_u:user_r:user_t";
    public int GetconErrno { get; set; }
    /// <summary>File labels by fd; a missing fd fails with <see cref="FileErrno"/>.</summary>
    public Dictionary<int, string> FileLabels { get; } = [];
    public Dictionary<string, string> PathLabels { get; } = new(StringComparer.Ordinal);
    public int FileErrno { get; set; } = ENODATA;
    /// <summary>fgetfilecon fails with EBADF (an O_PATH fd on libselinux &lt; 3.5).</summary>
    public bool FdIsOPath { get; set; }
    public int ClassErrno { get; set; } = EINVAL;
    /// <summary>When set, the computation calls fail with this errno.</summary>
    public int? ComputeAvErrno { get; set; }
    public int? RelabelErrno { get; set; }
    /// <summary>When set, relabel "succeeds" with this string (e.g. garbage).</summary>
    public string? RelabelOverride { get; set; }
    /// <summary>Bits the fake leaves out of avd.decided.</summary>
    public uint Undecided { get; set; }
    public int SetexecconErrno { get; set; }
    public int ExecveErrno { get; set; } = EACCES;
    public Exception? ThrowOnEnabled { get; set; }

    public string? ExecContext { get; private set; }
    public string? ExecPath { get; private set; }
    public List<string>? ExecArgv { get; private set; }
    public List<string>? ExecEnvp { get; private set; }

    public FakeLibSelinux Valid(params string[] contexts)
    {
        _validContexts.UnionWith(contexts);
        return this;
    }

    public FakeLibSelinux Allow(string source, string target, string cls, params string[] perms)
    {
        if (!_allow.TryGetValue((source, target, cls), out var set))
            _allow[(source, target, cls)] = set = [];
        set.UnionWith(perms);
        return this;
    }

    public FakeLibSelinux TypeChange(string source, string target, string cls, string newType)
    {
        _typeChange[(source, target, cls)] = newType;
        return this;
    }

    public FakeLibSelinux Permissive(string type)
    {
        _permissiveTypes.Add(type);
        return this;
    }

    public FakeLibSelinux WithoutClass(string name)
    {
        _classes.Remove(name);
        return this;
    }

    public int LastError => t_errno;

    public int IsSelinuxEnabled()
    {
        Calls.Add("is_selinux_enabled()");
        if (ThrowOnEnabled is not null)
            throw ThrowOnEnabled;
        t_errno = Enabled < 0 ? ENOMEM : 0;
        return Enabled;
    }

    public int SecurityGetenforce()
    {
        Calls.Add("security_getenforce()");
        t_errno = Enforce < 0 ? EnforceErrno : 0;
        return Enforce;
    }

    /// <summary>What getpeercon_raw reports for a socket (null: fails with <see cref="GetconErrno"/> or EINVAL).</summary>
    public string? PeerContext { get; set; }

    public int GetpeerconRaw(int fd, byte** context)
    {
        Calls.Add($"getpeercon_raw({fd})");
        if (PeerContext is null)
            return Fail(GetconErrno == 0 ? EINVAL : GetconErrno);
        *context = Give(PeerContext);
        return 0;
    }

    public int GetconRaw(byte** context)
    {
        Calls.Add("getcon_raw()");
        if (CurrentContext is null)
            return Fail(GetconErrno == 0 ? EINVAL : GetconErrno);
        *context = Give(CurrentContext);
        return 0;
    }

    public int FGetfileconRaw(int fd, byte** context)
    {
        Calls.Add($"fgetfilecon_raw({fd})");
        if (FdIsOPath)
            return Fail(EBADF);
        if (!FileLabels.TryGetValue(fd, out string? label))
            return Fail(FileErrno);
        *context = Give(label);
        return Encoding.UTF8.GetByteCount(label) + 1;
    }

    public int GetfileconRaw(byte* path, byte** context)
    {
        string p = Read(path);
        Calls.Add($"getfilecon_raw({p})");
        if (!PathLabels.TryGetValue(p, out string? label))
            return Fail(FileErrno);
        *context = Give(label);
        return Encoding.UTF8.GetByteCount(label) + 1;
    }

    public void Freecon(byte* context)
    {
        Calls.Add("freecon()");
        if (context == null)
            return;
        Assert.True(_outstanding.Remove((nint)context), "freecon of a pointer the fake did not hand out (or freed twice)");
        Freed.Add((nint)context);
        NativeMemory.Free(context);
    }

    public ushort StringToSecurityClass(byte* name)
    {
        string n = Read(name);
        Calls.Add($"string_to_security_class({n})");
        int index = _classes.Keys.ToList().IndexOf(n);
        if (index < 0)
        {
            t_errno = ClassErrno;
            return 0;
        }
        t_errno = 0;
        return (ushort)(index + 10); // kernel class numbers, not 1-based list positions
    }

    public uint StringToAvPerm(ushort securityClass, byte* permission)
    {
        string p = Read(permission);
        Calls.Add($"string_to_av_perm({securityClass}, {p})");
        string[]? perms = ClassAt(securityClass);
        int bit = perms is null ? -1 : Array.IndexOf(perms, p);
        if (bit < 0)
        {
            t_errno = EINVAL;
            return 0;
        }
        return 1u << bit;
    }

    public int SecurityCheckContextRaw(byte* context)
    {
        string c = Read(context);
        Calls.Add($"security_check_context_raw({c})");
        return _validContexts.Contains(c) ? 0 : Fail(EINVAL);
    }

    public int SecurityComputeAvFlagsRaw(byte* source, byte* target, ushort securityClass, uint requested, AvDecision* decision)
    {
        string s = Read(source), t = Read(target);
        Calls.Add($"security_compute_av_flags_raw({s}, {t}, {securityClass}, 0x{requested:x})");
        if (ComputeAvErrno is { } errno)
            return Fail(errno);
        string[]? perms = ClassAt(securityClass);
        if (perms is null || !_validContexts.Contains(s) || !_validContexts.Contains(t))
            return Fail(EINVAL);
        string cls = _classes.Keys.ToList()[securityClass - 10];
        uint allowed = 0;
        if (_allow.TryGetValue((TypeOf(s), TypeOf(t), cls), out var set))
            for (int i = 0; i < perms.Length; i++)
                if (set.Contains(perms[i]))
                    allowed |= 1u << i;
        *decision = new AvDecision
        {
            Allowed = allowed, Decided = ~Undecided, AuditAllow = 0, AuditDeny = ~0u, SeqNo = 7,
            Flags = _permissiveTypes.Contains(TypeOf(s)) ? AvDecision.FlagsPermissive : 0,
        };
        return 0;
    }

    public int SecurityComputeRelabelRaw(byte* source, byte* target, ushort securityClass, byte** newContext)
    {
        string s = Read(source), t = Read(target);
        Calls.Add($"security_compute_relabel_raw({s}, {t}, {securityClass})");
        if (RelabelErrno is { } errno)
            return Fail(errno);
        if (RelabelOverride is { } over)
        {
            *newContext = Give(over);
            return 0;
        }
        string cls = _classes.Keys.ToList()[securityClass - 10];
        // The kernel's defaults for a non-process class: the source's user, object_r, and without a rule the target's type.
        string[] sp = s.Split(':'), tp = t.Split(':');
        string type = _typeChange.TryGetValue((sp[2], tp[2], cls), out string? changed) ? changed : tp[2];
        string result = $"{sp[0]}:object_r:{type}";
        _validContexts.Add(result);
        *newContext = Give(result);
        return 0;
    }

    public int SetexecconRaw(byte* context)
    {
        string? c = context == null ? null : Read(context);
        Calls.Add($"setexeccon_raw({c ?? "NULL"})");
        if (SetexecconErrno != 0 && c is not null)
            return Fail(SetexecconErrno);
        ExecContext = c;
        return 0;
    }

    public int Execve(byte* path, byte** argv, byte** envp)
    {
        ExecPath = Read(path);
        ExecArgv = ReadArray(argv);
        ExecEnvp = ReadArray(envp);
        Calls.Add($"execve({ExecPath})");
        return Fail(ExecveErrno);
    }

    public void Dispose()
    {
        foreach (nint p in _outstanding)
            NativeMemory.Free((void*)p);
        _outstanding.Clear();
    }

    private string[]? ClassAt(ushort value)
    {
        int index = value - 10;
        return index >= 0 && index < _classes.Count ? _classes.Values.ToList()[index] : null;
    }

    private static string TypeOf(string context) => context.Split(':')[2];

    private static int Fail(int errno)
    {
        t_errno = errno;
        return -1;
    }

    private byte* Give(string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s + "\0");
        byte* p = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        _outstanding.Add((nint)p);
        return p;
    }

    private string Read(byte* p)
    {
        Assert.True(p != null, "NULL string passed to libselinux");
        ReadOnlySpan<byte> span = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(p);
        byte[] raw = new byte[span.Length + 1];
        span.CopyTo(raw);
        RawStrings.Add(raw);
        return Encoding.UTF8.GetString(span);
    }

    private List<string> ReadArray(byte** array)
    {
        var list = new List<string>();
        for (int i = 0; array[i] != null; i++)
            list.Add(Encoding.UTF8.GetString(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(array[i])));
        return list;
    }
}
