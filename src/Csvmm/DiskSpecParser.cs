using Csvmm.Machine;

namespace Csvmm.Cli;

/// <summary>Parses "PATH[,if=virtio|ide][,readonly=on|off][,cache=writeback|none]" (a path may contain ",," for a literal comma, as in QEMU).</summary>
public static class DiskSpecParser
{
    public static bool TryParse(string text, out DiskSpec? spec, out string error)
    {
        spec = null;
        error = "";
        var parts = SplitQemuStyle(text);
        string path = parts[0];
        if (path.Length == 0) { error = $"--disk '{text}': missing path"; return false; }
        var iface = DiskInterface.Virtio;
        bool readOnly = false;
        var cache = DiskCache.Writeback;
        var seen = new HashSet<string>();
        foreach (var kv in parts.Skip(1))
        {
            int eq = kv.IndexOf('=');
            if (eq <= 0) { error = $"--disk '{text}': expected key=value, got '{kv}'"; return false; }
            string key = kv[..eq], value = kv[(eq + 1)..];
            if (!seen.Add(key)) { error = $"--disk '{text}': '{key}' given twice"; return false; }
            switch (key)
            {
                case "if":
                    if (value == "virtio") iface = DiskInterface.Virtio;
                    else if (value == "ide") iface = DiskInterface.Ide;
                    else { error = $"--disk '{text}': if={value} is not supported (virtio or ide)"; return false; }
                    break;
                case "readonly":
                    if (value is "on" or "true" or "yes") readOnly = true;
                    else if (value is "off" or "false" or "no") readOnly = false;
                    else { error = $"--disk '{text}': readonly={value} (on or off)"; return false; }
                    break;
                case "cache":
                    if (value == "writeback") cache = DiskCache.Writeback;
                    else if (value == "none") cache = DiskCache.None;
                    else { error = $"--disk '{text}': cache={value} is not supported (writeback or none)"; return false; }
                    break;
                default:
                    error = $"--disk '{text}': unknown option '{key}' (if, readonly, cache)";
                    return false;
            }
        }
        spec = new DiskSpec(path, iface, readOnly, cache);
        return true;
    }

    private static List<string> SplitQemuStyle(string text)
    {
        var parts = new List<string>();
        var cur = new System.Text.StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == ',')
            {
                if (parts.Count == 0 && i + 1 < text.Length && text[i + 1] == ',') { cur.Append(','); i++; continue; }
                parts.Add(cur.ToString());
                cur.Clear();
            }
            else cur.Append(text[i]);
        }
        parts.Add(cur.ToString());
        return parts;
    }
}
