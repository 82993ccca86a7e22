using System.Diagnostics;
using System.Runtime.InteropServices;
using Csvmm.Kvm;
using Csvmm.Sys;

namespace Csvmm.Kvm.Tests;

/// <summary>
/// <see cref="KickTarget"/> without KVM: the kick signal interrupts a blocking system call on the registered thread
/// (EINTR, as KVM_RUN returns), and nothing is ever sent to a thread that has left.
/// </summary>
public partial class KickTargetTests
{
    private const int Eintr = 4;

    [LibraryImport("libc.so.6", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(nint fds, nuint count, int timeoutMs);

    [Fact]
    public void A_kick_interrupts_a_blocking_call_on_the_registered_thread()
    {
        VcpuKick.Install();
        var target = VcpuKick.NewTarget();
        using var entered = new ManualResetEventSlim();
        int result = 0, errno = 0;
        var elapsed = Stopwatch.StartNew();
        var t = new Thread(() =>
        {
            target.Enter();
            entered.Set();
            try
            {
                // Blocks for 20 s unless a signal interrupts it (the handler has no SA_RESTART).
                result = Poll(0, 0, 20_000);
                errno = Marshal.GetLastPInvokeError();
            }
            finally
            {
                target.Leave();
            }
        });
        t.Start();
        entered.Wait();
        Assert.True(target.IsRegistered);
        // The thread may not be inside poll yet: kick until it has come back (each kick is harmless otherwise).
        Assert.True(target.Kick());
        while (!t.Join(50))
            target.Kick();
        Assert.Equal(-1, result);
        Assert.Equal(Eintr, errno);
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(15), $"poll was not interrupted ({elapsed.Elapsed})");
    }

    [Fact]
    public void A_thread_that_left_is_never_signalled()
    {
        VcpuKick.Install();
        var target = VcpuKick.NewTarget();
        Assert.False(target.Kick()); // never registered
        var t = new Thread(() => { target.Enter(); target.Leave(); });
        t.Start();
        t.Join();
        Assert.False(target.IsRegistered);
        Assert.False(target.Kick()); // its pthread_t may already be reused: nothing is sent
    }

    [Fact]
    public void Only_one_thread_registers_at_a_time()
    {
        var target = VcpuKick.NewTarget();
        target.Enter();
        try
        {
            Assert.Throws<InvalidOperationException>(target.Enter);
        }
        finally
        {
            target.Leave();
        }
        target.Enter(); // free again after Leave
        target.Leave();
    }
}
