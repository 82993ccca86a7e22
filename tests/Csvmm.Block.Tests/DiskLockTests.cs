using System.Diagnostics;

namespace Csvmm.Block.Tests;

/// <summary>
/// OFD image locks. OFD locks conflict between open file descriptions even inside one process, so two opens in
/// this process stand for two VMs; a child process (python3's fcntl) proves the lock is visible across processes.
/// </summary>
public sealed class DiskLockTests : IDisposable
{
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public DiskLockTests() => _image = _scratch.Image("shared.img", 8192);

    public void Dispose() => _scratch.Dispose();

    private string InUse(string lockedFor) =>
        $"{_image} is in use by another process (locked for {lockedFor}); use readonly=on on both sides, or stop the other VM";

    [Fact]
    public void SecondWriterIsRefused()
    {
        using RawDisk first = DiskOpener.Open(_image);
        Assert.Equal(DiskLockMode.Exclusive, first.LockMode);
        DiskException e = Assert.Throws<DiskException>(() => DiskOpener.Open(_image));
        Assert.Equal(InUse("writing"), e.Message);
        Assert.Equal(DiskIoResult.Ok, first.Write(0, new byte[512])); // the first keeps working
    }

    [Fact]
    public void ReaderIsRefusedWhileAWriterHoldsTheImage()
    {
        using RawDisk writer = DiskOpener.Open(_image, cache: DiskCacheMode.None);
        Assert.Equal(InUse("writing"), Assert.Throws<DiskException>(() => DiskOpener.Open(_image, readOnly: true)).Message);
    }

    [Fact]
    public void WriterIsRefusedWhileReadersShareTheImage()
    {
        using RawDisk reader = DiskOpener.Open(_image, readOnly: true);
        Assert.Equal(InUse("reading"), Assert.Throws<DiskException>(() => DiskOpener.Open(_image)).Message);
    }

    [Fact]
    public void ReadersShare()
    {
        using RawDisk a = DiskOpener.Open(_image, readOnly: true);
        using RawDisk b = DiskOpener.Open(_image, readOnly: true, cache: DiskCacheMode.None);
        Assert.Equal(DiskLockMode.Shared, a.LockMode);
        Assert.Equal(DiskLockMode.Shared, b.LockMode);
        Assert.Contains("shared lock", b.Describe);
    }

    [Fact]
    public void TheLockGoesAwayWithTheDisk()
    {
        RawDisk first = DiskOpener.Open(_image);
        Assert.Throws<DiskException>(() => DiskOpener.Open(_image));
        first.Dispose();
        using RawDisk second = DiskOpener.Open(_image);   // neither the first nor the refused open left a lock behind
        Assert.Equal(DiskLockMode.Exclusive, second.LockMode);
    }

    [Fact]
    public void ASymlinkDoesNotDodgeTheLock()
    {
        string link = _scratch.PathOf("alias.img");
        File.CreateSymbolicLink(link, _image);
        using RawDisk first = DiskOpener.Open(_image);
        Assert.Equal($"{link} -> {_image} is in use by another process (locked for writing); use readonly=on on both sides, or stop the other VM",
            Assert.Throws<DiskException>(() => DiskOpener.Open(link)).Message);
    }

    [SkippableFact]
    public void AnotherProcessHoldingTheImageRefusesUs()
    {
        using Process? child = StartLocker(_image, writeLock: true, out string status);
        Skip.If(child is null, "python3 is not available");
        try
        {
            Assert.Equal("locked", status);
            Assert.Equal(InUse("writing"), Assert.Throws<DiskException>(() => DiskOpener.Open(_image, readOnly: true)).Message);
        }
        finally
        {
            child!.StandardInput.Close();   // the child exits, and its lock with it
            child.WaitForExit();
        }
        using RawDisk disk = DiskOpener.Open(_image);
    }

    [SkippableFact]
    public void OurLockRefusesAnotherProcess()
    {
        using RawDisk disk = DiskOpener.Open(_image, readOnly: true);
        using Process? child = StartLocker(_image, writeLock: true, out string status);
        Skip.If(child is null, "python3 is not available");
        child!.StandardInput.Close();
        child.WaitForExit();
        Assert.Equal("busy", status);  // F_OFD_SETLK F_WRLCK in the child failed with EAGAIN
    }

    /// <summary>
    /// Starts python3 taking an OFD lock on <paramref name="path"/> (struct flock packed as hhqqi + padding = 32
    /// bytes, l_pid 0); it reports "locked" and holds it until stdin closes, or reports "busy" and exits.
    /// Null when python3 cannot be started.
    /// </summary>
    private static Process? StartLocker(string path, bool writeLock, out string status)
    {
        const string script = """
            import fcntl, os, struct, sys
            fd = os.open(sys.argv[1], os.O_RDWR)
            lock = struct.pack('hhqqi4x', fcntl.F_WRLCK if sys.argv[2] == 'w' else fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
            except OSError:
                print('busy', flush=True)
                sys.exit(0)
            print('locked', flush=True)
            sys.stdin.read()
            """;
        var psi = new ProcessStartInfo("python3") { RedirectStandardInput = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(path);
        psi.ArgumentList.Add(writeLock ? "w" : "r");
        Process? p;
        try
        {
            p = Process.Start(psi);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            p = null;
        }
        status = p?.StandardOutput.ReadLine() ?? "";
        return p;
    }
}

/// <summary>Handing an image's lock from a migration's source to its destination (two opens in one process stand for the two csvmm).</summary>
public sealed class DiskLockHandoverTests : IDisposable
{
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public DiskLockHandoverTests() => _image = _scratch.Image("moving.img", 8192);

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void The_destination_opens_unlocked_and_takes_the_lock_only_once_the_source_lets_go()
    {
        using RawDisk source = DiskOpener.Open(_image);
        using RawDisk destination = DiskOpener.Open(new DiskOpenOptions(_image) { DeferLock = true });
        Assert.Equal(DiskLockMode.Handed, destination.LockMode);
        Assert.Throws<DiskException>(() => destination.AcquireLock()); // the source still holds it
        Assert.Equal(DiskLockMode.Handed, destination.LockMode);

        source.ReleaseLock();
        Assert.Equal(DiskLockMode.Handed, source.LockMode);
        destination.AcquireLock();
        Assert.Equal(DiskLockMode.Exclusive, destination.LockMode);
        // The source cannot take it back (a `cont` after a completed migration), and a third open is refused.
        Assert.Throws<DiskException>(() => source.AcquireLock());
        Assert.Throws<DiskException>(() => DiskOpener.Open(_image));
    }

    [Fact]
    public void A_failed_migration_gives_the_lock_back_to_the_source()
    {
        using RawDisk source = DiskOpener.Open(_image, readOnly: true);
        source.ReleaseLock();
        source.AcquireLock();
        Assert.Equal(DiskLockMode.Shared, source.LockMode);
        Assert.Throws<DiskException>(() => DiskOpener.Open(_image)); // a writer is refused again
        source.AcquireLock(); // holding it already: nothing to do
        Assert.Equal(DiskLockMode.Shared, source.LockMode);
    }
}
