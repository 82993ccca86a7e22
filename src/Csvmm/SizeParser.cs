using System.Globalization;

namespace Csvmm.Cli;

/// <summary>QEMU-style memory sizes: "512M", "2G", "1048576K", "512" (MiB when no suffix), "1.5G".</summary>
public static class SizeParser
{
    public static bool TryParse(string text, out ulong bytes, out string error)
    {
        bytes = 0;
        error = "";
        string s = text.Trim();
        if (s.Length == 0) { error = "empty size"; return false; }
        int i = 0;
        while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
        string number = s[..i];
        string suffix = s[i..].Trim().ToUpperInvariant();
        if (suffix.EndsWith("IB")) suffix = suffix[..^2];
        else if (suffix.EndsWith('B') && suffix.Length == 2) suffix = suffix[..^1];
        int shift = suffix switch
        {
            "" or "M" => 20,
            "K" => 10,
            "G" => 30,
            "T" => 40,
            "B" => 0,
            _ => -1,
        };
        if (number.Length == 0 || shift < 0 ||
            !decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value))
        {
            error = $"'{text}' is not a size (examples: 512M, 2G)";
            return false;
        }
        // Before multiplying: a huge number times the unit overflows decimal itself (found by fuzzing).
        if (value >= (decimal)ulong.MaxValue / (1UL << shift)) { error = $"'{text}' is too large"; return false; }
        decimal total = value * (decimal)(1UL << shift);
        if (total >= (decimal)ulong.MaxValue) { error = $"'{text}' is too large"; return false; }
        bytes = (ulong)decimal.Truncate(total);
        return true;
    }

    public static string Format(ulong bytes) =>
        bytes % (1UL << 30) == 0 ? $"{bytes >> 30}G" : bytes % (1UL << 20) == 0 ? $"{bytes >> 20}M" : $"{bytes >> 10}K";
}
