namespace Csvmm.Boot;

/// <summary>Size constants and human-readable sizes for messages.</summary>
internal static class Size
{
    public const ulong KiB = 1UL << 10;
    public const ulong MiB = 1UL << 20;
    public const ulong GiB = 1UL << 30;
    public const ulong Page = 0x1000;

    /// <summary>"123 bytes", "64 KiB", "1.5 MiB": exact for small values, one decimal otherwise.</summary>
    public static string Describe(ulong bytes) => bytes switch
    {
        < KiB => $"{bytes} bytes",
        < MiB => Scaled(bytes, KiB, "KiB"),
        < GiB => Scaled(bytes, MiB, "MiB"),
        _ => Scaled(bytes, GiB, "GiB"),
    };

    private static string Scaled(ulong bytes, ulong unit, string name) =>
        bytes % unit == 0 ? $"{bytes / unit} {name}" : $"{(double)bytes / unit:0.0} {name}";

    public static ulong AlignDown(ulong value, ulong alignment) => value & ~(alignment - 1);

    /// <summary>Rounds up to a power-of-two alignment; false when the result would not fit in 64 bits.</summary>
    public static bool TryAlignUp(ulong value, ulong alignment, out ulong result)
    {
        ulong mask = alignment - 1;
        if (value > ulong.MaxValue - mask)
        {
            result = 0;
            return false;
        }
        result = (value + mask) & ~mask;
        return true;
    }
}
