namespace Csvmm.Machine.Tests;

/// <summary>
/// The pause protocol with stand-in vCPU threads (no KVM): each "runs" by counting, checks <see cref="PauseControl.Requested"/>
/// at the top of its loop as VcpuThread does, and a kick is what makes a busy thread reach that check.
/// </summary>
public sealed class PauseControlTests
{
    private sealed class FakeVcpus : IDisposable
    {
        public readonly long[] Work;
        private readonly Thread[] _threads;
        private volatile bool _finished;
        private readonly PauseControl _pause;
        public volatile bool IgnoreKicks;

        public FakeVcpus(PauseControl pause, int count)
        {
            _pause = pause;
            Work = new long[count];
            _threads = new Thread[count];
            for (int i = 0; i < count; i++)
            {
                int id = i;
                _threads[i] = new Thread(() => Loop(id)) { IsBackground = true };
                _threads[i].Start();
            }
        }

        public bool Finished { get => _finished; set => _finished = value; }

        private void Loop(int id)
        {
            _pause.Enter();
            try
            {
                while (!_finished)
                {
                    if (_pause.Requested && !IgnoreKicks)
                    {
                        _pause.Park(() => _finished);
                        continue;
                    }
                    Interlocked.Increment(ref Work[id]);
                    Thread.Sleep(1); // "KVM_RUN"
                }
            }
            finally { _pause.Leave(); }
        }

        public void WaitUntilAllRan()
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Work.Any(w => Interlocked.Read(ref w) == 0) && DateTime.UtcNow < deadline) Thread.Sleep(5);
        }

        public long[] Snapshot() => Work.Select(w => Interlocked.Read(ref w)).ToArray();

        public bool Join() => _threads.All(t => t.Join(TimeSpan.FromSeconds(10)));

        public void Dispose() { _finished = true; Join(); }
    }

    [Fact]
    public void Pause_parks_every_vcpu_and_resume_lets_them_run_again()
    {
        var pause = new PauseControl();
        using var vcpus = new FakeVcpus(pause, 3);
        vcpus.WaitUntilAllRan();
        int kicks = 0;
        Assert.True(pause.Pause(() => Interlocked.Increment(ref kicks), TimeSpan.FromSeconds(10)));
        Assert.True(kicks >= 1);
        Assert.Equal((3, 3), pause.Counts);
        var frozen = vcpus.Snapshot();
        Thread.Sleep(100);
        Assert.Equal(frozen, vcpus.Snapshot()); // nobody ran while paused

        pause.Resume();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (vcpus.Snapshot().Zip(frozen).Any(p => p.First == p.Second) && DateTime.UtcNow < deadline) Thread.Sleep(5);
        Assert.All(vcpus.Snapshot().Zip(frozen), p => Assert.True(p.First > p.Second));
        Assert.Equal(0, pause.Counts.Parked);
    }

    [Fact]
    public void A_vcpu_that_never_reaches_its_check_makes_pause_report_failure_and_resume_cancels()
    {
        var pause = new PauseControl();
        using var vcpus = new FakeVcpus(pause, 2) { IgnoreKicks = true };
        vcpus.WaitUntilAllRan();
        Assert.False(pause.Pause(() => { }, TimeSpan.FromMilliseconds(300)));
        Assert.True(pause.Requested);
        pause.Resume();
        Assert.False(pause.Requested);
    }

    [Fact]
    public void A_vm_built_paused_runs_nothing_until_resumed_and_finishing_releases_parked_vcpus()
    {
        var pause = new PauseControl(startPaused: true);
        var vcpus = new FakeVcpus(pause, 2);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (pause.Counts.Parked < 2 && DateTime.UtcNow < deadline) Thread.Sleep(5);
        Assert.Equal((2, 2), pause.Counts);
        Assert.Equal([0L, 0L], vcpus.Snapshot());
        vcpus.Finished = true;            // the VM ends while paused (quit, a signal)
        Assert.True(vcpus.Join());
        Assert.Equal((0, 0), pause.Counts);
    }

    [Fact]
    public void Threads_that_left_do_not_count_toward_all_parked()
    {
        var pause = new PauseControl();
        var vcpus = new FakeVcpus(pause, 2);
        vcpus.WaitUntilAllRan();
        vcpus.Finished = true;
        Assert.True(vcpus.Join());
        Assert.True(pause.Pause(() => { }, TimeSpan.FromSeconds(1)));
    }
}
