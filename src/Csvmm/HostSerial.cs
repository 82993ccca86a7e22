using Csvmm.Devices;
using Microsoft.Win32.SafeHandles;

namespace Csvmm.Cli;

/// <summary>
/// The host end of COM1's output: bytes from the guest are buffered and written to a file descriptor
/// (stdout or a file) at each newline, when the buffer fills, or by a one-shot 20 ms flusher for partial lines
/// (prompts), armed only while such a line waits — an idle or line-oriented guest wakes no timer thread.
/// Called on vCPU threads under the UART's lock; the write(2) happens outside any guest path lock.
/// </summary>
public sealed unsafe class HostSerialOutput : ISerialOutput, Csvmm.Machine.IFlushable, IDisposable
{
    private readonly SafeFileHandle _fd;
    private readonly byte[] _buffer = new byte[4096];
    private int _count;
    private readonly object _lock = new();
    private readonly Timer _flusher;
    private bool _broken;
    private bool _flusherArmed;
    private const int FlushDelayMs = 20;

    private HostSerialOutput(SafeFileHandle fd)
    {
        _fd = fd;
        _flusher = new Timer(_ => Flush(), null, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Writes to fd 1 with write(2), sharing its file offset with stderr (no positional writes).</summary>
    public static HostSerialOutput ToStdout() => new(new SafeFileHandle(1, ownsHandle: false));

    public static HostSerialOutput ToFile(string path) =>
        new(File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.Read));

    /// <summary>Bytes the guest wrote.</summary>
    public long BytesWritten;

    public void Write(byte value)
    {
        lock (_lock)
        {
            _buffer[_count++] = value;
            BytesWritten++;
            if (value == (byte)'\n' || _count == _buffer.Length) FlushLocked();
            else if (!_flusherArmed)
            {
                _flusherArmed = true;
                _flusher.Change(FlushDelayMs, Timeout.Infinite);
            }
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            _flusherArmed = false;
            FlushLocked();
        }
    }

    private void FlushLocked()
    {
        int done = 0;
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            int fd = (int)_fd.DangerousGetHandle();
            fixed (byte* p = _buffer)
            {
                while (!_broken && done < _count)
                {
                    long n = Tmds.Linux.LibC.write(fd, p + done, _count - done);
                    if (n > 0) { done += (int)n; continue; }
                    if (n < 0 && Tmds.Linux.LibC.errno == 4 /* EINTR */) continue;
                    _broken = true; // the reader went away (closed pipe): guest output is dropped, the VM runs on
                }
            }
        }
        finally
        {
            if (added) _fd.DangerousRelease();
        }
        _count = 0;
    }

    public void Dispose()
    {
        _flusher.Dispose();
        Flush();
        _fd.Dispose();
    }
}

/// <summary>COM1 output discarded (--serial none).</summary>
public sealed class NullSerialOutput : ISerialOutput
{
    public void Write(byte value) { }
}

/// <summary>
/// Reads the host's stdin and feeds the guest's UART, with QEMU's escape keys: Ctrl-A x quits,
/// Ctrl-A h prints help, Ctrl-A Ctrl-A sends a literal Ctrl-A. Runs on a background thread.
/// </summary>
public sealed class StdinPump
{
    private readonly Func<ReadOnlyMemory<byte>, int> _deliver;
    private readonly Action _quit;
    private readonly Action<string> _say;
    private bool _escape;

    /// <param name="deliver">Hands bytes to the guest UART; returns how many it took (0 when its FIFO is full).</param>
    public StdinPump(Func<ReadOnlyMemory<byte>, int> deliver, Action quit, Action<string> say)
    {
        _deliver = deliver;
        _quit = quit;
        _say = say;
    }

    public void Start()
    {
        var t = new Thread(Loop) { IsBackground = true, Name = "stdin" };
        t.Start();
    }

    private void Loop()
    {
        using var stdin = new FileStream(new SafeFileHandle(0, ownsHandle: false), FileAccess.Read, 0);
        var buf = new byte[256];
        while (true)
        {
            int n;
            try { n = stdin.Read(buf, 0, buf.Length); }
            catch (IOException) { return; }
            if (n <= 0) return; // EOF: the guest simply gets no more input
            Process(buf.AsSpan(0, n));
        }
    }

    /// <summary>Processes host input (exposed for tests).</summary>
    public void Process(ReadOnlySpan<byte> input)
    {
        var outBuf = new byte[input.Length];
        int o = 0;
        foreach (byte b in input)
        {
            if (_escape)
            {
                _escape = false;
                switch (b)
                {
                    case (byte)'x': Send(outBuf.AsMemory(0, o)); _quit(); return;
                    case (byte)'h': _say("\r\nC-a h    print this help\r\nC-a x    exit csvmm\r\nC-a C-a  send C-a\r\n"); continue;
                    case 0x01: outBuf[o++] = 0x01; continue;
                    default: continue;
                }
            }
            if (b == 0x01) { _escape = true; continue; }
            outBuf[o++] = b;
        }
        Send(outBuf.AsMemory(0, o));
    }

    private void Send(ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            int took = _deliver(data);
            if (took < 0) return;          // VM gone
            data = data[took..];
            if (took == 0) Thread.Sleep(1); // guest's FIFO is full: wait for it to drain
        }
    }
}
