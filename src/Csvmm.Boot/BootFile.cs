namespace Csvmm.Boot;

/// <summary>
/// The bytes of one boot input (kernel, initrd, firmware) together with the name used in error messages.
/// </summary>
/// <param name="Name">How the file is named in messages: the path the user gave, or a test's label.</param>
/// <param name="Bytes">The whole file.</param>
public sealed record BootFile(string Name, ReadOnlyMemory<byte> Bytes)
{
    /// <summary>Length of the file in bytes.</summary>
    public int Length => Bytes.Length;

    /// <summary>
    /// Reads a whole file, refusing an empty file or one larger than <paramref name="maxBytes"/> before reading it.
    /// </summary>
    /// <param name="path">File to read; also the name used in messages.</param>
    /// <param name="maxBytes">Largest acceptable size (at most <see cref="Array.MaxLength"/>).</param>
    /// <param name="what">What the file is for ("kernel", "initrd", "firmware"), used in messages.</param>
    /// <param name="limitName">What the limit is ("guest RAM"), for the message; null for "limit".</param>
    /// <exception cref="BootException">The file is missing, unreadable, empty or too large.</exception>
    public static BootFile Read(string path, long maxBytes, string what, string? limitName = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        maxBytes = Math.Min(maxBytes, Array.MaxLength);
        try
        {
            if (Directory.Exists(path))
                throw new BootException($"{path}: {what} file is a directory");
            var info = new FileInfo(path);
            if (!info.Exists)
                throw new BootException($"{path}: {what} file not found");
            CheckLength(path, info.Length, maxBytes, what, limitName);
            byte[] bytes = File.ReadAllBytes(path);
            CheckLength(path, bytes.LongLength, maxBytes, what, limitName); // the file may have changed since the stat
            return new BootFile(path, bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new BootException($"{path}: cannot read {what} file: {e.Message}", e);
        }
    }

    private static void CheckLength(string path, long length, long maxBytes, string what, string? limitName)
    {
        if (length == 0)
            throw new BootException($"{path}: {what} file is empty");
        if (length > maxBytes)
            throw new BootException($"{path}: {what} file is {Size.Describe((ulong)length)}, more than the {Size.Describe((ulong)maxBytes)} {limitName ?? "limit"}");
    }
}
