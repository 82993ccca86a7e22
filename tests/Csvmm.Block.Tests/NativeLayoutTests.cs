using Csvmm.TestSupport;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

using Csvmm.Sys;

namespace Csvmm.Block.Tests;

/// <summary>
/// The block layer's hand-written C structs, ioctl numbers and constants, checked against the installed headers:
/// a C program prints each value as gcc sees it.
/// </summary>
public sealed class NativeLayoutTests
{
    private static readonly (string Expression, long Expected)[] Facts =
    [
        ("sizeof(struct flock)", Unsafe.SizeOf<Flock>()),
        ("offsetof(struct flock, l_type)", Offset<Flock>(nameof(Flock.Type))),
        ("offsetof(struct flock, l_whence)", Offset<Flock>(nameof(Flock.Whence))),
        ("offsetof(struct flock, l_start)", Offset<Flock>(nameof(Flock.Start))),
        ("offsetof(struct flock, l_len)", Offset<Flock>(nameof(Flock.Length))),
        ("offsetof(struct flock, l_pid)", Offset<Flock>(nameof(Flock.Pid))),
        ("F_OFD_GETLK", DiskLock.GetLockCommand),
        ("F_OFD_SETLK", DiskLock.SetLockCommand),
        ("F_RDLCK", DiskLock.ReadLock),
        ("F_WRLCK", DiskLock.WriteLock),
        ("F_UNLCK", DiskLock.Unlock),
        ("BLKGETSIZE64", BlockIoctl.GetSize64),
        ("BLKSSZGET", BlockIoctl.GetSectorSize),
        ("FALLOC_FL_KEEP_SIZE", NativeConstants.FallocKeepSize),
        ("FALLOC_FL_PUNCH_HOLE", NativeConstants.FallocPunchHole),
        ("FALLOC_FL_ZERO_RANGE", NativeConstants.FallocZeroRange),
        ("sizeof(struct statx)", Unsafe.SizeOf<StatX>()),
        ("offsetof(struct statx, stx_mask)", Offset<StatX>(nameof(StatX.Mask))),
        ("offsetof(struct statx, stx_blksize)", Offset<StatX>(nameof(StatX.BlockSize))),
        ("offsetof(struct statx, stx_mode)", Offset<StatX>(nameof(StatX.Mode))),
        ("offsetof(struct statx, stx_ino)", Offset<StatX>(nameof(StatX.Inode))),
        ("offsetof(struct statx, stx_size)", Offset<StatX>(nameof(StatX.Size))),
        ("offsetof(struct statx, stx_blocks)", Offset<StatX>(nameof(StatX.Blocks))),
        ("offsetof(struct statx, stx_rdev_major)", Offset<StatX>(nameof(StatX.RdevMajor))),
        ("offsetof(struct statx, stx_rdev_minor)", Offset<StatX>(nameof(StatX.RdevMinor))),
        ("offsetof(struct statx, stx_dev_major)", Offset<StatX>(nameof(StatX.DevMajor))),
        ("offsetof(struct statx, stx_dev_minor)", Offset<StatX>(nameof(StatX.DevMinor))),
        ("offsetof(struct statx, stx_dio_mem_align)", Offset<StatX>(nameof(StatX.DioMemAlign))),
        ("offsetof(struct statx, stx_dio_offset_align)", Offset<StatX>(nameof(StatX.DioOffsetAlign))),
        ("STATX_TYPE", NativeConstants.StatxType),
        ("STATX_MODE", NativeConstants.StatxMode),
        ("STATX_INO", NativeConstants.StatxIno),
        ("STATX_SIZE", NativeConstants.StatxSize),
        ("STATX_BLOCKS", NativeConstants.StatxBlocks),
        ("STATX_DIOALIGN", NativeConstants.StatxDioAlign),
        ("EPERM", Errno.Eperm), ("ENOENT", Errno.Enoent), ("EINTR", Errno.Eintr), ("EIO", Errno.Eio),
        ("EAGAIN", Errno.Eagain), ("EACCES", Errno.Eacces), ("EISDIR", Errno.Eisdir), ("EINVAL", Errno.Einval),
        ("ETXTBSY", Errno.Etxtbsy), ("EROFS", Errno.Erofs), ("ENOLCK", Errno.Enolck), ("ENOSYS", Errno.Enosys),
        ("EOPNOTSUPP", Errno.Eopnotsupp),
        // Linux native AIO (linux/aio_abi.h, asm/unistd_64.h).
        ("sizeof(struct iocb)", Unsafe.SizeOf<IoCb>()),
        ("offsetof(struct iocb, aio_data)", Offset<IoCb>(nameof(IoCb.Data))),
        ("offsetof(struct iocb, aio_key)", Offset<IoCb>(nameof(IoCb.Key))),
        ("offsetof(struct iocb, aio_rw_flags)", Offset<IoCb>(nameof(IoCb.RwFlags))),
        ("offsetof(struct iocb, aio_lio_opcode)", Offset<IoCb>(nameof(IoCb.Opcode))),
        ("offsetof(struct iocb, aio_reqprio)", Offset<IoCb>(nameof(IoCb.RequestPriority))),
        ("offsetof(struct iocb, aio_fildes)", Offset<IoCb>(nameof(IoCb.FileDescriptor))),
        ("offsetof(struct iocb, aio_buf)", Offset<IoCb>(nameof(IoCb.Buffer))),
        ("offsetof(struct iocb, aio_nbytes)", Offset<IoCb>(nameof(IoCb.Bytes))),
        ("offsetof(struct iocb, aio_offset)", Offset<IoCb>(nameof(IoCb.Offset))),
        ("offsetof(struct iocb, aio_reserved2)", Offset<IoCb>(nameof(IoCb.Reserved2))),
        ("offsetof(struct iocb, aio_flags)", Offset<IoCb>(nameof(IoCb.Flags))),
        ("offsetof(struct iocb, aio_resfd)", Offset<IoCb>(nameof(IoCb.ResultFd))),
        ("sizeof(((struct iocb *)0)->aio_lio_opcode)", sizeof(ushort)),
        ("sizeof(((struct iocb *)0)->aio_fildes)", sizeof(uint)),
        ("sizeof(struct io_event)", Unsafe.SizeOf<IoEvent>()),
        ("offsetof(struct io_event, data)", Offset<IoEvent>(nameof(IoEvent.Data))),
        ("offsetof(struct io_event, obj)", Offset<IoEvent>(nameof(IoEvent.Object))),
        ("offsetof(struct io_event, res)", Offset<IoEvent>(nameof(IoEvent.Result))),
        ("offsetof(struct io_event, res2)", Offset<IoEvent>(nameof(IoEvent.Result2))),
        ("sizeof(aio_context_t)", sizeof(ulong)),
        ("sizeof(struct timespec)", Unsafe.SizeOf<AioTimespec>()),
        ("offsetof(struct timespec, tv_nsec)", Offset<AioTimespec>(nameof(AioTimespec.Nanoseconds))),
        ("IOCB_CMD_PREADV", AioAbi.CmdPreadv), ("IOCB_CMD_PWRITEV", AioAbi.CmdPwritev), ("IOCB_FLAG_RESFD", AioAbi.FlagResfd),
        ("__NR_io_setup", AioAbi.SysIoSetup), ("__NR_io_destroy", AioAbi.SysIoDestroy),
        ("__NR_io_getevents", AioAbi.SysIoGetevents), ("__NR_io_submit", AioAbi.SysIoSubmit),
        ("sizeof(struct iovec)", Unsafe.SizeOf<IoVector>()),
        // Tmds.LibC values the opener relies on.
        ("O_DIRECT", Tmds.Linux.LibC.O_DIRECT), ("O_CLOEXEC", Tmds.Linux.LibC.O_CLOEXEC), ("O_NOCTTY", Tmds.Linux.LibC.O_NOCTTY),
        ("O_NONBLOCK", Tmds.Linux.LibC.O_NONBLOCK), ("F_SETFL", Tmds.Linux.LibC.F_SETFL), ("AT_EMPTY_PATH", Tmds.Linux.LibC.AT_EMPTY_PATH),
    ];

    [Fact]
    public void BindingsMatchTheCHeaders()
    {
        // A proof that cannot run is a failure, not a skip: the bindings would go unchecked (Gcc fails without gcc).
        IReadOnlyDictionary<string, long> actual = Probe();
        var wrong = Facts.Where(f => actual[f.Expression] != f.Expected)
            .Select(f => $"{f.Expression}: C says {actual[f.Expression]}, C# has {f.Expected}").ToList();
        Assert.Empty(wrong);
    }

    private static long Offset<T>(string field) => Marshal.OffsetOf<T>(field).ToInt64();

    /// <summary>Compiles and runs the probe with <see cref="Gcc.CompileAndRun"/>. Line i of its output is the value of Facts[i].</summary>
    private static IReadOnlyDictionary<string, long> Probe()
    {
        var c = new StringBuilder();
        c.AppendLine("#define _GNU_SOURCE");
        foreach (string h in new[] { "stddef.h", "stdio.h", "errno.h", "fcntl.h", "sys/stat.h", "linux/fs.h", "linux/falloc.h", "linux/aio_abi.h", "sys/syscall.h", "sys/uio.h", "time.h" })
            c.AppendLine($"#include <{h}>");
        c.AppendLine("int main(void)\n{");
        foreach ((string expression, _) in Facts)
            c.AppendLine($"    printf(\"%lld\\n\", (long long)({expression}));");
        c.AppendLine("    return 0;\n}");
        string output = Gcc.CompileAndRun(c.ToString(), "the block layout probe");
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Facts.Length, lines.Length);
        return Facts.Select((f, i) => (f.Expression, long.Parse(lines[i]))).ToDictionary(x => x.Expression, x => x.Item2);
    }
}
