using Tmds.Linux;

namespace Csvmm.Cli;

/// <summary>Puts the controlling terminal on stdin into raw mode (as QEMU's -serial stdio does) and restores it.</summary>
public sealed unsafe class Terminal : IDisposable
{
    private termios _saved;
    private bool _active;
    private readonly object _lock = new();

    public static bool IsTerminal(int fd) => LibC.isatty(fd) == 1;

    /// <summary>Enters raw mode on fd 0 when it is a terminal; returns null otherwise.</summary>
    public static Terminal? TryEnterRaw()
    {
        if (!IsTerminal(0)) return null;
        var t = new Terminal();
        termios saved;
        if (LibC.tcgetattr(0, &saved) != 0) return null;
        t._saved = saved;
        termios raw = saved;
        // cfmakeraw, but keep output post-processing (so host-side messages keep their line breaks, as QEMU does).
        raw.c_iflag &= ~(uint)(0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x400); // IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON
        raw.c_lflag &= ~(uint)(0x8 | 0x40 | 0x2 | 0x1 | 0x8000);                     // ECHO ECHONL ICANON ISIG IEXTEN
        raw.c_cflag = (raw.c_cflag & ~(uint)(0x30 | 0x100)) | 0x30;                   // CS8, no parity
        raw.c_cc[6] = 1;  // VMIN
        raw.c_cc[5] = 0;  // VTIME
        if (LibC.tcsetattr(0, 0 /* TCSANOW */, &raw) != 0) return null;
        t._active = true;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => t.Dispose();
        return t;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (!_active) return;
            _active = false;
            termios saved = _saved;
            LibC.tcsetattr(0, 0, &saved);
        }
    }
}
