using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Csvmm.Security.Native;
using Microsoft.Win32.SafeHandles;
using Csvmm.Sys;

namespace Csvmm.Security;

/// <summary>One line of a file_contexts file.</summary>
/// <param name="Pattern">The regular expression as written (matched anchored, as <c>^Pattern$</c>).</param>
/// <param name="Kind">The file kind the line is restricted to, or <see cref="FileKind.Any"/>.</param>
/// <param name="Context">The context, or null for <c>&lt;&lt;none&gt;&gt;</c> (leave unlabelled).</param>
/// <param name="Line">1-based line number in the file.</param>
/// <param name="IsLiteral">True when the pattern has no regex metacharacters: such lines take precedence over all regexes.</param>
public sealed record FileContextEntry(string Pattern, FileKind Kind, string? Context, int Line, bool IsLiteral);

/// <summary>
/// A file_contexts mapping (libselinux's format: <c>regex [type] context</c>) and the lookup that
/// matchpathcon/restorecon perform with it (libselinux 3.4 <c>label_file</c> semantics):
/// <list type="bullet">
/// <item>each regex is anchored: <c>^regex$</c> (exactly, without grouping, so a top-level <c>a|b</c> anchors each side only once, as in libselinux); <c>.</c> matches newlines too (PCRE2_DOTALL);</item>
/// <item>lines whose pattern has no metacharacter (a literal path) win over every regex;</item>
/// <item>otherwise the LAST matching line in file order wins;</item>
/// <item>a line with a file type only matches files of that kind;</item>
/// <item><c>&lt;&lt;none&gt;&gt;</c> as the winning context means "no label" (and csvmm then denies);</item>
/// <item>two lines with the same pattern and overlapping file kinds invalidate the file (libselinux's validation rejects them).</item>
/// </list>
/// Stricter than libselinux (fail closed): a line with more than three fields is an error.
/// Regexes run on .NET's engine, which agrees with PCRE2 on the syntax file_contexts use.
/// </summary>
public sealed class FileContexts
{
    /// <summary>The context string meaning "leave unlabelled".</summary>
    public const string NoneContext = "<<none>>";

    private static readonly TimeSpan s_matchTimeout = TimeSpan.FromSeconds(1);
    private readonly Regex[] _regexes;
    private readonly int[] _searchOrder;

    private FileContexts(string source, FileContextEntry[] entries, Regex[] regexes)
    {
        Source = source;
        Entries = entries;
        _regexes = regexes;
        // libselinux sorts literal paths behind the regexes (keeping their file order) and then
        // searches from the back: literal lines last-to-first, then regex lines last-to-first.
        _searchOrder = [.. Enumerable.Range(0, entries.Length).Where(i => entries[i].IsLiteral).Reverse(),
                        .. Enumerable.Range(0, entries.Length).Where(i => !entries[i].IsLiteral).Reverse()];
    }

    /// <summary>Where the mapping was read from (for messages).</summary>
    public string Source { get; }

    /// <summary>The lines in file order.</summary>
    public IReadOnlyList<FileContextEntry> Entries { get; }

    /// <summary>
    /// Reads and parses <paramref name="path"/>. <paramref name="trust"/> is checked on the opened
    /// descriptor that is then read. Throws <see cref="SecurityPolicyException"/>
    /// (<see cref="PolicyErrorKind.FileContextsInvalid"/>) when the file is missing, untrusted or malformed.
    /// </summary>
    public static FileContexts Load(string path, FileTrust trust = FileTrust.Any)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        string text;
        try
        {
            using SafeFileHandle handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read);
            bool added = false;
            LinuxStat st;
            string statError;
            bool statOk;
            try
            {
                handle.DangerousAddRef(ref added);
                statOk = TrustedFile.TryFStat((int)handle.DangerousGetHandle(), out st, out statError);
            }
            finally
            {
                if (added)
                    handle.DangerousRelease();
            }
            if (!statOk)
                throw Invalid($"cannot check file_contexts {full}: {statError}");
            if (TrustedFile.Violation(st, trust) is { } violation)
                throw Invalid($"refusing file_contexts {full}: {violation}");
            if (st.Size > 16 << 20)
                throw Invalid($"file_contexts {full} is larger than 16 MiB");
            var bytes = new byte[st.Size];
            int read = RandomAccess.Read(handle, bytes, 0);
            text = new UTF8Encoding(false, true).GetString(bytes, 0, read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException)
        {
            throw Invalid($"cannot read file_contexts {full}: {e.Message}");
        }
        return Parse(text, full);
    }

    /// <summary>Parses file_contexts text; <paramref name="source"/> names it in messages.</summary>
    public static FileContexts Parse(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        var entries = new List<FileContextEntry>();
        var regexes = new List<Regex>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int lineNo = i + 1;
            string line = lines[i].Trim();
            if (line.Length == 0 || line[0] == '#')
                continue;
            string[] fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 2)
                throw Invalid($"{source} line {lineNo}: missing fields (expected: regex [file type] context)");
            if (fields.Length > 3)
                throw Invalid($"{source} line {lineNo}: too many fields (expected: regex [file type] context)");
            string pattern = fields[0];
            FileKind kind = FileKind.Any;
            if (fields.Length == 3)
                kind = ParseKind(fields[1]) ?? throw Invalid($"{source} line {lineNo}: invalid file type '{AvcFormat.Printable(fields[1])}'");
            string contextField = fields[^1];
            string? context = null;
            if (contextField != NoneContext)
            {
                if (SecurityContext.ShapeError(contextField) is { } shape)
                    throw Invalid($"{source} line {lineNo}: invalid context '{AvcFormat.Printable(contextField)}': {shape}");
                context = contextField;
            }
            Regex regex;
            try
            {
                regex = new Regex("^" + pattern + "$", RegexOptions.Singleline | RegexOptions.CultureInvariant, s_matchTimeout);
            }
            catch (ArgumentException e)
            {
                throw Invalid($"{source} line {lineNo}: invalid regex '{AvcFormat.Printable(pattern)}': {e.Message.Split('\n')[0]}");
            }
            foreach (var earlier in entries)
                if (earlier.Pattern == pattern && (earlier.Kind == FileKind.Any || kind == FileKind.Any || earlier.Kind == kind))
                    throw Invalid($"{source} line {lineNo}: '{AvcFormat.Printable(pattern)}' is already specified on line {earlier.Line}");
            entries.Add(new FileContextEntry(pattern, kind, context, lineNo, !HasMetaCharacters(pattern)));
            regexes.Add(regex);
        }
        return new FileContexts(source, [.. entries], [.. regexes]);
    }

    /// <summary>The winning line for <paramref name="path"/> (taken as given, after removing duplicate and trailing slashes), or null.</summary>
    public FileContextEntry? Match(string path, FileKind kind)
    {
        ArgumentNullException.ThrowIfNull(path);
        string key = NormalizeKey(path);
        if (key.Length == 0)
            return null;
        foreach (int i in _searchOrder)
        {
            var entry = Entries[i];
            if (kind != FileKind.Any && entry.Kind != FileKind.Any && entry.Kind != kind)
                continue;
            bool matched;
            try
            {
                matched = _regexes[i].IsMatch(key);
            }
            catch (RegexMatchTimeoutException)
            {
                throw Invalid($"{Source} line {entry.Line}: regex took too long to match {AvcFormat.Printable(key)}");
            }
            if (matched)
                return entry;
        }
        return null;
    }

    /// <summary>The label of <paramref name="path"/> (already a real path) of kind <paramref name="kind"/>; no file system access.</summary>
    public DiskLabel Lookup(string path, FileKind kind)
    {
        var entry = Match(path, kind);
        if (entry is null)
            return DiskLabel.Unlabelled(path, Source, $"no line of {Source} matches {path}");
        string source = $"{Source} line {entry.Line}";
        return entry.Context is null
            ? DiskLabel.Unlabelled(path, source, $"{source} leaves {path} unlabelled (<<none>>)")
            : DiskLabel.Labelled(path, entry.Context, source);
    }

    /// <summary>Resolves <paramref name="path"/> to its real path (every symlink and <c>..</c>) and looks that up.</summary>
    public unsafe DiskLabel LookupFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[]? cpath = Utf8.ToCString(path);
        if (cpath is null)
            return DiskLabel.Unlabelled(path, Source, "disk path contains a NUL byte");
        byte* real;
        fixed (byte* p = cpath)
            real = LibCFiles.RealPath(p, null);
        if (real == null)
            return DiskLabel.Unlabelled(path, Source, $"cannot resolve disk path {path}: {LibCFiles.ErrorText(Marshal.GetLastPInvokeError())}");
        string realPath;
        LinuxStat st;
        int rc;
        try
        {
            realPath = Utf8.FromCString(real);
            rc = LibCFiles.Stat(real, &st);
        }
        finally
        {
            LibCFiles.Free(real);
        }
        if (rc != 0)
            return DiskLabel.Unlabelled(realPath, Source, $"cannot stat disk {realPath}: {LibCFiles.ErrorText(Marshal.GetLastPInvokeError())}");
        return Lookup(realPath, KindOf(st.Mode));
    }

    /// <summary>
    /// Looks up the file an open descriptor refers to, by the path the kernel reports for it
    /// (<c>/proc/self/fd/N</c>): the label checked is that of the file actually opened, with no
    /// check/use race on the path.
    /// </summary>
    public DiskLabel LookupOpened(SafeFileHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            string link = $"/proc/self/fd/{fd}";
            string? target;
            try
            {
                target = new FileInfo(link).LinkTarget;
            }
            catch (IOException e)
            {
                return DiskLabel.Unlabelled(link, Source, $"cannot read {link}: {e.Message}");
            }
            if (target is null || target.Length == 0 || target[0] != '/')
                return DiskLabel.Unlabelled(link, Source, $"descriptor {fd} does not refer to a file with a path");
            if (target.EndsWith(" (deleted)", StringComparison.Ordinal))
                return DiskLabel.Unlabelled(target, Source, $"disk {target} was deleted or replaced after it was opened");
            if (!TrustedFile.TryFStat(fd, out LinuxStat st, out string error))
                return DiskLabel.Unlabelled(target, Source, $"cannot stat disk {target}: {error}");
            return Lookup(target, KindOf(st.Mode));
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    /// <summary>Checks every context of the mapping against <paramref name="engine"/>; throws on the first invalid one.</summary>
    public void Validate(IPolicyEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        foreach (var entry in Entries)
        {
            if (entry.Context is null)
                continue;
            try
            {
                engine.GetSid(entry.Context);
            }
            catch (SecurityPolicyException e) when (e.Kind == PolicyErrorKind.InvalidContext)
            {
                throw Invalid($"{Source} line {entry.Line}: {e.Message}");
            }
        }
    }

    internal static FileKind KindOf(uint mode) => (mode & LibCFiles.S_IFMT) switch
    {
        LibCFiles.S_IFREG => FileKind.Regular,
        LibCFiles.S_IFDIR => FileKind.Directory,
        LibCFiles.S_IFCHR => FileKind.CharDevice,
        LibCFiles.S_IFBLK => FileKind.BlockDevice,
        LibCFiles.S_IFIFO => FileKind.Fifo,
        LibCFiles.S_IFLNK => FileKind.Symlink,
        LibCFiles.S_IFSOCK => FileKind.Socket,
        _ => FileKind.Any,
    };

    private static FileKind? ParseKind(string s) => s switch
    {
        "--" => FileKind.Regular,
        "-d" => FileKind.Directory,
        "-c" => FileKind.CharDevice,
        "-b" => FileKind.BlockDevice,
        "-p" => FileKind.Fifo,
        "-l" => FileKind.Symlink,
        "-s" => FileKind.Socket,
        _ => null,
    };

    /// <summary>libselinux's test: any of <c>.^$?*+|[({</c> outside a backslash escape.</summary>
    internal static bool HasMetaCharacters(string pattern)
    {
        for (int i = 0; i < pattern.Length; i++)
        {
            switch (pattern[i])
            {
                case '.' or '^' or '$' or '?' or '*' or '+' or '|' or '[' or '(' or '{':
                    return true;
                case '\\':
                    i++;
                    break;
            }
        }
        return false;
    }

    /// <summary>As libselinux: collapse "//" runs and drop one trailing slash (except for "/").</summary>
    private static string NormalizeKey(string path)
    {
        string key = path;
        while (key.Contains("//", StringComparison.Ordinal))
            key = key.Replace("//", "/", StringComparison.Ordinal);
        if (key.Length > 1 && key[^1] == '/')
            key = key[..^1];
        return key;
    }

    private static SecurityPolicyException Invalid(string message) => new(PolicyErrorKind.FileContextsInvalid, message);
}
