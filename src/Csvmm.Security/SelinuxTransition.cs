using System.Collections;
using System.Runtime.InteropServices;
using Csvmm.Security.Native;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>
/// What a csvmm re-executed in the VM's domain is told by its parent (environment variable
/// <see cref="SelinuxTransition.MarkerVariable"/>): the domain that asked for the VM, and the domain it was re-executed in.
/// </summary>
/// <param name="SourceContext">The parent's process context: the child decides the gate for it again.</param>
/// <param name="ExecContext">The context the parent passed to setexeccon: the child checks it really runs in it.</param>
public sealed record TransitionMarker(string SourceContext, string ExecContext);

/// <summary>
/// <c>--selinux-transition</c>: once the gate has computed the VM's context, csvmm re-executes itself in that domain
/// (<c>setexeccon</c> + <c>execve("/proc/self/exe")</c> with the same arguments), before any guest RAM exists, so the
/// VM runs confined to its own domain. The 2007 RFC's manager forks and re-execs the child; csvmm is one process per VM,
/// so it execs in place (same pid, same terminal, signals and exit code reach the caller unchanged) and avoids a fork of
/// a multi-threaded .NET process. The child finds <see cref="MarkerVariable"/>, does not exec again (no loop), runs the
/// whole gate again for the parent's domain and refuses to continue unless <c>getcon()</c> is the context expected.
/// </summary>
public static unsafe class SelinuxTransition
{
    /// <summary>The environment variable that marks the re-executed csvmm: "<c>SOURCE-CONTEXT EXEC-CONTEXT</c>".</summary>
    public const string MarkerVariable = "CSVMM_SELINUX_TRANSITION";

    /// <summary>The executable re-executed: this very binary, even if its path was replaced since.</summary>
    public const string SelfExe = "/proc/self/exe";

    /// <summary>
    /// The context to exec in: the VM context's type and level with the process's user and role. The VM context itself
    /// carries <c>object_r</c> (SELinux's default role for a relabel in a non-process class), which refpolicy's
    /// <c>constrain process transition</c> (r1 == r2) refuses for a process; the role must be authorised for the VM type
    /// (<c>role user_r types vm_user_t;</c>).
    /// </summary>
    public static string ExecContext(string processContext, string vmContext)
    {
        SecurityContext process = SecurityContext.Parse(processContext);
        SecurityContext vm = SecurityContext.Parse(vmContext);
        return new SecurityContext(process.User, process.Role, vm.Type, vm.Level ?? process.Level).ToString();
    }

    /// <summary>The marker's value.</summary>
    public static string FormatMarker(TransitionMarker marker)
    {
        ArgumentNullException.ThrowIfNull(marker);
        return marker.SourceContext + " " + marker.ExecContext;
    }

    /// <summary>Parses a marker value; null when absent or not two well-shaped contexts separated by one space.</summary>
    public static TransitionMarker? ParseMarker(string? value)
    {
        if (string.IsNullOrEmpty(value))
            return null;
        string[] parts = value.Split(' ');
        if (parts.Length != 2 || !SecurityContext.TryParse(parts[0], out _) || !SecurityContext.TryParse(parts[1], out _))
            return null;
        return new TransitionMarker(parts[0], parts[1]);
    }

    /// <summary>The marker in this process's environment, or null; <paramref name="present"/> says whether the variable is set at all.</summary>
    public static TransitionMarker? CurrentMarker(out bool present)
    {
        string? value = Environment.GetEnvironmentVariable(MarkerVariable);
        present = value is not null;
        return ParseMarker(value);
    }

    /// <summary>
    /// Re-executes this csvmm, with its own arguments and environment plus the marker, in <see cref="TransitionMarker.ExecContext"/>.
    /// Never returns on success.
    /// </summary>
    /// <exception cref="SecurityPolicyException"><see cref="PolicyErrorKind.TransitionFailed"/>: setexeccon or execve failed (nothing changed).</exception>
    public static void ReExec(TransitionMarker marker)
    {
        try
        {
            ReExec(LibSelinuxNative.Instance, SelfExe, Environment.GetCommandLineArgs(), Environment.GetEnvironmentVariables(), marker);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new SecurityPolicyException(PolicyErrorKind.TransitionFailed, $"libselinux.so.1 is not usable: {e.Message}");
        }
    }

    /// <summary>The environment the child gets: <paramref name="environment"/> without any old marker, plus <paramref name="marker"/>.</summary>
    internal static List<string> ChildEnvironment(IDictionary environment, TransitionMarker marker)
    {
        var env = new List<string>(environment.Count + 1);
        foreach (DictionaryEntry e in environment)
        {
            string name = (string)e.Key;
            if (name == MarkerVariable || name.Length == 0 || name.Contains('=') || name.Contains('\0'))
                continue;
            string value = e.Value as string ?? "";
            if (value.Contains('\0'))
                continue;
            env.Add(name + "=" + value);
        }
        env.Sort(StringComparer.Ordinal);
        env.Add(MarkerVariable + "=" + FormatMarker(marker));
        return env;
    }

    /// <summary>setexeccon_raw(exec context) then execve(<paramref name="exe"/>, <paramref name="argv"/>, environment + marker), on this thread.</summary>
    internal static void ReExec(ILibSelinux lib, string exe, IReadOnlyList<string> argv, IDictionary environment, TransitionMarker marker)
    {
        ArgumentNullException.ThrowIfNull(lib);
        ArgumentNullException.ThrowIfNull(argv);
        ArgumentNullException.ThrowIfNull(marker);
        if (SecurityContext.ShapeError(marker.ExecContext) is { } shape)
            throw Failed($"cannot re-execute csvmm in '{AvcFormat.Printable(marker.ExecContext)}': {shape}");
        if (argv.Count == 0)
            throw Failed("cannot re-execute csvmm: no argv[0]");
        List<string> env = ChildEnvironment(environment, marker);

        // Everything execve needs is built before the exec context is set, so nothing can fail in between.
        using var block = new CStringArrays(exe, argv, env);
        byte[] context = Utf8.ToCString(marker.ExecContext)!;
        int rc, errno;
        fixed (byte* p = context)
        {
            rc = lib.SetexecconRaw(p);
            errno = lib.LastError;
        }
        if (rc != 0)
            throw Failed($"setexeccon({marker.ExecContext}) failed: {LibCFiles.ErrorText(errno)}");

        rc = lib.Execve(block.Path, block.Argv, block.Envp);
        errno = lib.LastError;
        // Still here: the exec failed. Reset the exec context so nothing else this thread runs inherits it.
        lib.SetexecconRaw(null);
        throw Failed($"cannot re-execute csvmm in {marker.ExecContext}: execve({exe}) failed: {LibCFiles.ErrorText(errno)}" +
            (errno == 13 ? " (the policy must allow the process transition and csvmm's executable as an entrypoint of that domain)" : ""));
    }

    private static SecurityPolicyException Failed(string message) => new(PolicyErrorKind.TransitionFailed, message);

    /// <summary>A path and two NULL-terminated arrays of NUL-terminated UTF-8 strings in one native allocation each, freed on dispose.</summary>
    private sealed class CStringArrays : IDisposable
    {
        private readonly List<nint> _allocations = [];

        public CStringArrays(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp)
        {
            try
            {
                Path = String(path);
                Argv = Array(argv);
                Envp = Array(envp);
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public byte* Path { get; }
        public byte** Argv { get; }
        public byte** Envp { get; }

        private byte* String(string s)
        {
            byte[] bytes = Utf8.ToCString(s) ?? throw Failed("an argument or environment string contains a NUL character");
            byte* p = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
            _allocations.Add((nint)p);
            bytes.CopyTo(new Span<byte>(p, bytes.Length));
            return p;
        }

        private byte** Array(IReadOnlyList<string> strings)
        {
            byte** array = (byte**)NativeMemory.Alloc((nuint)(strings.Count + 1), (nuint)sizeof(byte*));
            _allocations.Add((nint)array);
            for (int i = 0; i < strings.Count; i++)
                array[i] = String(strings[i]);
            array[strings.Count] = null;
            return array;
        }

        public void Dispose()
        {
            foreach (nint p in _allocations)
                NativeMemory.Free((void*)p);
            _allocations.Clear();
        }
    }
}
