using System.Runtime.InteropServices;

namespace Csvmm.Block.Tests;

/// <summary>
/// A per-test directory on a real disk file system (/var/tmp, not a tmpfs /tmp, so O_DIRECT is available where
/// the host has it), removed afterwards.
/// </summary>
internal sealed class Scratch : IDisposable
{
    public Scratch()
    {
        string root = Directory.Exists("/var/tmp") ? "/var/tmp" : AppContext.BaseDirectory;
        Dir = Directory.CreateDirectory(Path.Combine(root, $"csvmm-block-{Guid.NewGuid():N}")).FullName;
    }

    public string Dir { get; }

    /// <summary>The tests run as root here: permission checks that root bypasses need another way in.</summary>
    public static bool IsRoot => Tmds.Linux.LibC.geteuid() == 0;

    public string PathOf(string name) => Path.Combine(Dir, name);

    /// <summary>Creates an image of <paramref name="size"/> bytes filled with <see cref="Pattern"/>.</summary>
    public string Image(string name, int size)
    {
        string path = PathOf(name);
        File.WriteAllBytes(path, Pattern(0, size));
        return path;
    }

    /// <summary>Deterministic, position-dependent bytes (so a misplaced transfer shows up).</summary>
    public static byte[] Pattern(long start, int length)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++)
        {
            long x = start + i;
            b[i] = (byte)(x * 131 + (x >> 9) * 7 + 1);
        }
        return b;
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>Native memory (like guest RAM), page aligned, viewed from a chosen offset so tests can misalign it on purpose.</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    private readonly byte* _base;
    private readonly int _offset;

    public NativeBuffer(int length, int misalign = 0)
    {
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)(length + misalign), 4096);
        _offset = misalign;
        Length = length;
        Span.Clear();
    }

    public int Length { get; }
    public Span<byte> Span => new(_base + _offset, Length);

    public void Dispose() => NativeMemory.AlignedFree(_base);
}
