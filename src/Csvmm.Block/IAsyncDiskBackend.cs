using System.Runtime.InteropServices;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>
/// A disk that can also keep many requests in flight at once (QEMU's aio=native): a device opens one
/// <see cref="IDiskRequestQueue"/> per I/O thread and submits the requests that qualify through it; the others
/// take the synchronous <see cref="IDiskBackend"/> methods as before.
/// </summary>
public interface IAsyncDiskBackend : IDiskBackend
{
    /// <summary>The most buffers per request a queue can be opened for (Linux's IOV_MAX).</summary>
    const int MaxBuffers = 1024;

    /// <summary>
    /// A queue for up to <paramref name="depth"/> requests in flight, each of at most <paramref name="maxBuffers"/>
    /// buffers; null when this disk serves requests synchronously only (buffered I/O, where the page cache makes
    /// the synchronous path the fastest, or a kernel that refuses an AIO context). The caller disposes it before the disk.
    /// </summary>
    IDiskRequestQueue? OpenRequestQueue(int depth, int maxBuffers);
}

/// <summary>One finished request: the caller's token and the outcome of the whole transfer.</summary>
[StructLayout(LayoutKind.Auto)]
public readonly struct DiskCompletion(ulong token, DiskIoResult result)
{
    public ulong Token { get; } = token;
    public DiskIoResult Result { get; } = result;
}

/// <summary>
/// Asynchronous vectored reads and writes of one disk, used by one thread at a time (a device's I/O thread).
/// Buffers point into memory that stays put until the request completes (guest RAM).
/// </summary>
/// <remarks>
/// <para>Requests are queued with <see cref="TryEnqueue"/> and handed to the kernel in one batch by
/// <see cref="Submit"/>. A request the kernel does not take is carried out synchronously there and completes like
/// the others. <see cref="CompletionEvent"/> becomes readable when completions may be waiting; <see cref="Reap"/>
/// collects them. Each completion covers the whole request: a short transfer is continued synchronously, a
/// failure is a <see cref="DiskIoResult"/>.</para>
/// <para>Nothing on the request path allocates or throws.</para>
/// </remarks>
public interface IDiskRequestQueue : IDisposable
{
    /// <summary>The most requests in flight (queued, submitted or completed but not yet reaped).</summary>
    int Capacity { get; }

    /// <summary>Requests queued, submitted or completed but not yet reaped.</summary>
    int InFlight { get; }

    /// <summary>
    /// An eventfd that becomes readable when completions may be waiting; poll it, then call <see cref="Reap"/>
    /// (which resets it). Owned by the queue.
    /// </summary>
    EventFdHandle CompletionEvent { get; }

    /// <summary>
    /// Queues a read into (or, <paramref name="write"/>, a write from) <paramref name="buffers"/> at consecutive disk
    /// bytes from <paramref name="offset"/>, to complete with <paramref name="token"/>. False when the request does
    /// not qualify (alignment, range, read-only, too many buffers, the queue is full): the caller serves it
    /// synchronously, which also reports any error. The buffers are copied; their memory must stay until completion.
    /// </summary>
    bool TryEnqueue(ulong offset, ReadOnlySpan<IoVector> buffers, bool write, ulong token);

    /// <summary>Hands every queued request to the kernel (one system call for the batch).</summary>
    void Submit();

    /// <summary>
    /// Moves finished requests into <paramref name="completions"/> and returns how many. Waits until at least
    /// <paramref name="minimum"/> have finished (bounded by what is in flight); 0 never blocks. Resets
    /// <see cref="CompletionEvent"/>: call again while it fills the whole span.
    /// </summary>
    int Reap(Span<DiskCompletion> completions, int minimum);

    /// <summary>
    /// True when finished requests are waiting to be collected, told without a system call (a busy-waiting I/O thread
    /// checks it). False also when the queue cannot tell that way: then only <see cref="CompletionEvent"/> says so.
    /// </summary>
    bool CompletionsReady => false;

    /// <summary>
    /// Like <see cref="Reap"/> with no minimum but without system calls: moves the completions
    /// <see cref="CompletionsReady"/> sees into <paramref name="completions"/> and returns how many (0 when the queue
    /// cannot collect them that way). Leaves <see cref="CompletionEvent"/> as it is: the caller resets it before it
    /// sleeps on it, then looks again.
    /// </summary>
    int Poll(Span<DiskCompletion> completions) => 0;

    /// <summary>
    /// Forgets queued requests, waits for every submitted one to finish and drops all completions: afterwards nothing
    /// is in flight and no buffer will be touched again (a device reset).
    /// </summary>
    void DiscardAll();
}
