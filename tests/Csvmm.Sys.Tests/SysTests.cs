using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Csvmm.Sys;

namespace Csvmm.Sys.Tests;

/// <summary>The eventfd handle and poll(2): counting, non-blocking, ready and timeout.</summary>
public class EventFdAndPollTests
{
    [Fact]
    public void Signals_add_up_and_consume_resets_without_blocking()
    {
        using var e = EventFdHandle.Create();
        Assert.Equal(0UL, e.Consume()); // nothing pending: returns at once
        e.Signal();
        e.Signal(41);
        Assert.Equal(42UL, e.Consume());
        Assert.Equal(0UL, e.Consume());
    }

    [Fact]
    public void Poll_reports_the_signalled_eventfd_and_times_out_otherwise()
    {
        using var a = EventFdHandle.Create();
        using var b = EventFdHandle.Create();
        Span<PollFd> fds = [PollFd.For(a), PollFd.For(b)];
        var watch = Stopwatch.StartNew();
        Assert.Equal(0, Poll.Wait(fds, 30));
        Assert.True(watch.ElapsedMilliseconds >= 25, $"returned after {watch.ElapsedMilliseconds} ms");
        b.Signal();
        Assert.Equal(1, Poll.Wait(fds, 1000));
        Assert.False(fds[0].Ready);
        Assert.True(fds[1].Ready);
        Assert.Equal(PollFd.In, fds[1].REvents);
    }

    [Fact]
    public void A_closed_handle_refuses_to_signal()
    {
        var e = EventFdHandle.Create();
        e.Dispose();
        Assert.True(e.IsClosed);
        Assert.ThrowsAny<ObjectDisposedException>(() => e.Signal());
    }

    [Fact]
    public void Sys_exception_names_the_call_and_the_error()
    {
        var ex = Assert.Throws<SysException>(() => SysException.ThrowErrno("eventfd", Errno.Enomem));
        Assert.Equal(Errno.Enomem, ex.Errno);
        Assert.StartsWith("eventfd failed: ", ex.Message);
        Assert.EndsWith("(errno 12)", ex.Message);
    }
}

/// <summary>struct pollfd, POLLIN, the eventfd flags, the errno values, struct stat and S_IF*, as gcc sees them. A missing gcc is a failure.</summary>
public class SysLayoutTests
{
    [Fact]
    public void Bindings_match_the_C_headers()
    {
        (string Expression, long Expected)[] facts =
        [
            ("sizeof(struct pollfd)", Unsafe.SizeOf<PollFd>()),
            ("offsetof(struct pollfd, fd)", Marshal.OffsetOf<PollFd>("Fd").ToInt64()),
            ("offsetof(struct pollfd, events)", Marshal.OffsetOf<PollFd>(nameof(PollFd.Events)).ToInt64()),
            ("offsetof(struct pollfd, revents)", Marshal.OffsetOf<PollFd>(nameof(PollFd.REvents)).ToInt64()),
            ("POLLIN", PollFd.In),
            ("EFD_CLOEXEC", Tmds.Linux.LibC.EFD_CLOEXEC), ("EFD_NONBLOCK", Tmds.Linux.LibC.EFD_NONBLOCK),
            ("EPERM", Errno.Eperm), ("ENOENT", Errno.Enoent), ("EINTR", Errno.Eintr), ("EIO", Errno.Eio), ("EBADF", Errno.Ebadf),
            ("EAGAIN", Errno.Eagain), ("ENOMEM", Errno.Enomem), ("EACCES", Errno.Eacces), ("EISDIR", Errno.Eisdir),
            ("EINVAL", Errno.Einval), ("ETXTBSY", Errno.Etxtbsy), ("EROFS", Errno.Erofs), ("ERANGE", Errno.Erange),
            ("ENOLCK", Errno.Enolck), ("ENOSYS", Errno.Enosys), ("ENODATA", Errno.Enodata), ("EOPNOTSUPP", Errno.Eopnotsupp),
            ("sizeof(struct stat)", Unsafe.SizeOf<LinuxStat>()),
            ("offsetof(struct stat, st_dev)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Dev)).ToInt64()),
            ("offsetof(struct stat, st_ino)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Ino)).ToInt64()),
            ("offsetof(struct stat, st_mode)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Mode)).ToInt64()),
            ("offsetof(struct stat, st_uid)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Uid)).ToInt64()),
            ("offsetof(struct stat, st_gid)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Gid)).ToInt64()),
            ("offsetof(struct stat, st_size)", Marshal.OffsetOf<LinuxStat>(nameof(LinuxStat.Size)).ToInt64()),
            ("S_IFMT", LibCFiles.S_IFMT), ("S_IFSOCK", LibCFiles.S_IFSOCK), ("S_IFLNK", LibCFiles.S_IFLNK), ("S_IFREG", LibCFiles.S_IFREG),
            ("sizeof(struct sigaction)", Unsafe.SizeOf<SigAction>()),
            ("offsetof(struct sigaction, sa_handler)", Marshal.OffsetOf<SigAction>(nameof(SigAction.sa_handler)).ToInt64()),
            ("offsetof(struct sigaction, sa_mask)", Marshal.OffsetOf<SigAction>(nameof(SigAction.sa_mask)).ToInt64()),
            ("offsetof(struct sigaction, sa_flags)", Marshal.OffsetOf<SigAction>(nameof(SigAction.sa_flags)).ToInt64()),
            ("offsetof(struct sigaction, sa_restorer)", Marshal.OffsetOf<SigAction>(nameof(SigAction.sa_restorer)).ToInt64()),
            ("S_IFBLK", LibCFiles.S_IFBLK), ("S_IFDIR", LibCFiles.S_IFDIR), ("S_IFCHR", LibCFiles.S_IFCHR), ("S_IFIFO", LibCFiles.S_IFIFO),
        ];
        string dir = Directory.CreateTempSubdirectory("csvmm-sys-probe-").FullName;
        try
        {
            string source = Path.Combine(dir, "probe.c"), exe = Path.Combine(dir, "probe");
            File.WriteAllText(source, "#include <stdio.h>\n#include <stddef.h>\n#include <errno.h>\n#include <poll.h>\n#include <sys/eventfd.h>\n#include <sys/stat.h>\n#include <signal.h>\nint main(void)\n{\n" +
                string.Concat(facts.Select(f => $"    printf(\"%lld\\n\", (long long)({f.Expression}));\n")) + "    return 0;\n}\n");
            var (gcc, gccOutput) = Run("gcc", "-std=gnu11", "-Wall", "-Werror", "-o", exe, source);
            Assert.True(gcc == 0, gcc == -1 ? "gcc is required for the layout proofs: apt-get install build-essential" : gccOutput);
            var (code, output) = Run(exe);
            Assert.Equal(0, code);
            long[] actual = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
            var wrong = facts.Zip(actual).Where(p => p.First.Expected != p.Second)
                .Select(p => $"{p.First.Expression}: C says {p.Second}, C# has {p.First.Expected}").ToList();
            Assert.Empty(wrong);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return (-1, "");
        }
    }
}
