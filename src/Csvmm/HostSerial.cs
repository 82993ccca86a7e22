using Csvmm.Devices;
using Microsoft.Win32.SafeHandles;

namespace Csvmm.Cli;

/// <summary>
/// The host end of COM1's output (and the firmware debug port's): the guest's bytes go into a bounded ring under a
/// short lock, with no system call, and a dedicated "console" thread writes them to the file descriptor (stdout or a
/// file) — whole lines as soon as their newline arrives, a partial line (a prompt) 20 ms after its first byte, a full
/// chunk at once. So a slow or stalled reader of csvmm's stdout never blocks a vCPU thread inside the UART's lock.
/// </summary>
/// <remarks>
/// <para>The vCPU side (<see cref="Write"/>) wakes the console thread only when it sleeps with nothing to do (the first
/// byte after a quiet spell) or on a newline while it lingers over a partial line: about two wake-ups per line.</para>
/// <para>If the ring (1 MiB) is full because the reader has stopped reading, further bytes are dropped and counted
/// (<see cref="BytesDropped"/>), as they are when the reader has gone away (EPIPE): the guest runs on either way.</para>
/// </remarks>
public sealed unsafe class HostSerialOutput : ISerialOutput, Csvmm.Machine.IFlushable, IDisposable
{
    private const int Capacity = 1 << 20;
    private const int Chunk = 16 * 1024;
    private const int LingerMs = 20;
    private readonly TimeSpan _flushLimit;

    private enum WriterState { Idle, Lingering, Writing }

    private readonly SafeFileHandle _fd;
    private readonly byte[] _ring = new byte[Capacity];
    private readonly byte[] _chunk = new byte[Chunk];
    private readonly object _lock = new();
    private readonly Thread _writer;
    private int _head, _count;
    private bool _newline;        // a newline is in the ring
    private bool _flushRequested;
    private bool _stopping;
    private WriterState _state = WriterState.Writing;
    private long _enqueued, _written;
    private bool _broken;

    /// <param name="fd">Where the bytes go.</param>
    /// <param name="flushLimit">How long <see cref="Flush"/> and <see cref="Dispose"/> wait for a stalled reader (5 s; tests use less).</param>
    internal HostSerialOutput(SafeFileHandle fd, TimeSpan? flushLimit = null)
    {
        _fd = fd;
        _flushLimit = flushLimit ?? TimeSpan.FromSeconds(5);
        _writer = new Thread(WriterLoop, 128 * 1024) { IsBackground = true, Name = "console" };
        _writer.Start();
    }

    /// <summary>Writes to fd 1 with write(2), sharing its file offset with stderr (no positional writes).</summary>
    public static HostSerialOutput ToStdout() => new(new SafeFileHandle(1, ownsHandle: false));

    public static HostSerialOutput ToFile(string path) =>
        new(File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.Read));

    /// <summary>Bytes the guest wrote.</summary>
    public long BytesWritten;

    /// <summary>Bytes dropped because the host side did not keep up (ring full) or went away.</summary>
    public long BytesDropped { get { lock (_lock) return _dropped; } }
    private long _dropped;

    /// <summary>One guest byte: into the ring, no system call (a futex wake at most). vCPU threads, under the UART's lock.</summary>
    public void Write(byte value)
    {
        lock (_lock)
        {
            BytesWritten++;
            if (_count == Capacity)
            {
                _dropped++;
                return;
            }
            int tail = _head + _count;
            _ring[tail >= Capacity ? tail - Capacity : tail] = value;
            _count++;
            _enqueued++;
            bool newline = value == (byte)'\n';
            _newline |= newline;
            if (_state == WriterState.Idle || (_state == WriterState.Lingering && (newline || _count >= Chunk)))
                Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Waits (at most 5 s: a stalled reader must not hang csvmm) until every byte written so far is out.</summary>
    public void Flush()
    {
        var deadline = DateTime.UtcNow + _flushLimit;
        lock (_lock)
        {
            long target = _enqueued;
            _flushRequested = true;
            Monitor.PulseAll(_lock);
            while (_written < target && !_stopping)
            {
                TimeSpan left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                Monitor.Wait(_lock, left);
            }
        }
    }

    private void WriterLoop()
    {
        Csvmm.Sys.ThreadConfinement.Enter(Csvmm.Sys.ThreadRole.Console);
        while (true)
        {
            int n;
            lock (_lock)
            {
                while (true)
                {
                    if (_count > 0 && (_newline || _flushRequested || _stopping || _count >= Chunk)) break;
                    if (_count == 0)
                    {
                        _flushRequested = false;
                        if (_stopping) return;
                        _state = WriterState.Idle;
                        Monitor.Wait(_lock);
                        continue;
                    }
                    // A partial line: give its newline LingerMs to arrive, then write what there is.
                    _state = WriterState.Lingering;
                    if (!Monitor.Wait(_lock, LingerMs)) break;
                }
                _state = WriterState.Writing;
                n = Math.Min(_count, Chunk);
                int first = Math.Min(n, Capacity - _head);
                _ring.AsSpan(_head, first).CopyTo(_chunk);
                _ring.AsSpan(0, n - first).CopyTo(_chunk.AsSpan(first));
                _head = (_head + n) % Capacity;
                _count -= n;
                if (_count == 0) _newline = false;
            }
            int lost = WriteOut(n);
            lock (_lock)
            {
                _written += n;
                _dropped += lost;
                Monitor.PulseAll(_lock); // Flush() waiters
            }
        }
    }

    /// <summary>write(2) of the chunk, outside every lock; returns how many bytes were lost to a broken descriptor.</summary>
    private int WriteOut(int count)
    {
        int done = 0;
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            int fd = (int)_fd.DangerousGetHandle();
            // Safe: _chunk is pinned for the loop and only this thread touches it; count <= its length.
            fixed (byte* p = _chunk)
            {
                while (!_broken && done < count)
                {
                    long n = Tmds.Linux.LibC.write(fd, p + done, count - done);
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
        return count - done;
    }

    /// <summary>Writes out what is left (bounded by the flush limit), stops the console thread and closes the file.</summary>
    public void Dispose()
    {
        Flush();
        lock (_lock)
        {
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        if (_writer.Join(_flushLimit))
            _fd.Dispose(); // else the thread is stuck in write(2) on a stalled reader: leave the descriptor to the process exit
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
        Csvmm.Sys.ThreadConfinement.Enter(Csvmm.Sys.ThreadRole.Console);
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
