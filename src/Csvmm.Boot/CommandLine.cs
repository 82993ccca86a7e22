using System.Text;
using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>Validates the kernel command line and writes it NUL-terminated at <see cref="Layout.Cmdline"/>.</summary>
internal static class CommandLine
{
    /// <summary>The command line as bytes plus the terminating NUL, checked against <paramref name="maxLength"/> (excluding the NUL).</summary>
    public static byte[] Encode(string commandLine, ulong maxLength, string kernelName)
    {
        ArgumentNullException.ThrowIfNull(commandLine);
        if (commandLine.Contains('\0'))
            throw new BootException("kernel command line contains a NUL character");
        ulong limit = Math.Min(maxLength, (ulong)Layout.CmdlineMax - 1);
        int length = Encoding.UTF8.GetByteCount(commandLine);
        if ((ulong)length > limit)
            throw new BootException($"kernel command line is {length} bytes; {kernelName} accepts at most {limit}");
        var bytes = new byte[length + 1];
        Encoding.UTF8.GetBytes(commandLine, bytes);
        return bytes;
    }

    public static void Write(GuestMemory memory, byte[] encoded) =>
        GuestRam.Write(memory, Layout.Cmdline.Value, encoded, "kernel command line");
}
