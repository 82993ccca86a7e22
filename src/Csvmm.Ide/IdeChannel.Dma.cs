using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Devices;
using Csvmm.Memory;

namespace Csvmm.Ide;

/// <summary>Bus-master DMA (SFF-8038i) for one channel: command, status and PRD table address registers.</summary>
public sealed partial class IdeChannel
{
    /// <summary>A PRD table may not cross a 64 KiB boundary, so it holds at most 8192 entries.</summary>
    private const int MaxPrdEntries = 65536 / 8;

    private readonly GuestMemory? _dmaMemory;

    /// <summary>The buffers of the command being transferred, one per PRD entry at most (null without DMA memory).</summary>
    private readonly IoVector[]? _dmaVectors;
    private byte _bmCommand;
    private byte _bmStatus;
    private uint _prdTable;
    private bool _dmaPending;
    private bool _dmaWrite;
    private bool _busMasterEnabled = true;
    private readonly DiskWorker? _worker;
    private bool _ioInFlight;
    private int _jobGeneration;
    private DiskJob _job;

    /// <summary>
    /// This channel's 8 bus-master registers (offset 0 command, 2 status, 4-7 PRD table address) inside the
    /// PIIX BMIDE BAR (primary at +0, secondary at +8); null when the channel was built without DMA memory.
    /// </summary>
    public IBusDevice? BusMaster { get; }

    /// <summary>
    /// Whether the PCI function may master the bus (its command register's Bus Master Enable bit). While false a
    /// started transfer stalls: START sets Active but nothing moves until the bit is set again, when the pending
    /// transfer runs. A channel used on its own (no PCI function) is always enabled; <see cref="PiixIde"/> drives it.
    /// </summary>
    internal bool BusMasterEnabled
    {
        get { lock (_gate) return _busMasterEnabled; }
        set
        {
            lock (_gate)
            {
                bool rising = value && !_busMasterEnabled;
                _busMasterEnabled = value;
                if (rising && _dmaPending && (_bmCommand & BusMasterBits.Start) != 0) RunDma();
            }
        }
    }

    private void StartDma(IdeDrive drive, bool lba48, bool write)
    {
        if (_dmaMemory is null) { CommandError(AtaError.Abrt); return; }
        if (!TryDecodeRange(drive, lba48, out ulong lba, out uint count)) return;
        if (write && drive.Disk.ReadOnly) { CommandError(AtaError.Abrt); return; }
        _addressMode = lba48 ? AddressMode.Lba48 : (_device & 0x40) != 0 ? AddressMode.Lba28 : AddressMode.Chs;
        _nextLba = lba;
        _remainingSectors = count;
        _dmaWrite = write;
        _dmaPending = true;
        _status[Selected] = ReadyStatus | AtaStatus.Drq;
        if ((_bmCommand & BusMasterBits.Start) != 0 && _busMasterEnabled) RunDma();
    }

    /// <summary>
    /// Moves the whole pending transfer between the disk and the guest buffers the PRD table names, in one vectored
    /// disk request. The table is walked and every entry bounds-checked against guest RAM (a writable region for a
    /// disk read) before the disk is touched at all.
    /// </summary>
    /// <remarks>
    /// <para>Outcomes, as a bus master that works through its table entry by entry would leave them:</para>
    /// <list type="bullet">
    /// <item>Entries that cover more than the transfer: the transfer stops where it ends (the rest is ignored, EOT
    /// or not); success.</item>
    /// <item>A table that ends (EOT, or 8192 entries) before the transfer is covered, an entry outside guest RAM or a
    /// disk read into ROM, or an entry that is itself not in RAM: the entries before it are transferred, then the
    /// bus master reports Error and the command ends with ABRT; the address registers name the first sector not
    /// completely transferred.</item>
    /// <item>A backend failure: IDNF when out of range, UNC for a read, ABRT for a write, without the bus-master Error
    /// bit. The vectored request does not say where it failed, so the address registers name the command's first
    /// sector (per-entry requests named the first sector of the failing entry).</item>
    /// </list>
    /// </remarks>
    private void RunDma()
    {
        _dmaPending = false;
        IdeDrive drive = SelectedDrive!;
        ulong start = _nextLba * IdeDrive.SectorSize; // lba < 2^48: no overflow
        ulong wanted = (ulong)_remainingSectors * IdeDrive.SectorSize;
        bool tableError = !CollectPrdBuffers(wanted, out int count, out ulong covered);
        var job = new DiskJob(JobKind.Dma, drive, Selected, start, count, _dmaWrite, tableError, covered, wanted, 0);
        if (count == 0) FinishDma(job, DiskIoResult.Ok);
        else Post(job);
    }

    private enum JobKind : byte { Dma, PioRead, PioWrite, Flush }

    /// <summary>
    /// One disk request of the channel: a bus-master transfer (the collected PRD buffers), a PIO block into or out of
    /// the channel's buffer, or a cache flush; and what is needed to end it as the drive would.
    /// </summary>
    private readonly record struct DiskJob(JobKind Kind, IdeDrive Drive, int DriveIndex, ulong Start, int Count, bool Write,
        bool TableError, ulong Covered, ulong Wanted, int Generation);

    /// <summary>
    /// Runs a disk request: on the channel's I/O thread when it has one (the drive is busy, BSY, until the request ends;
    /// task-file writes are ignored meanwhile, even across a reset, because the request still owns the channel's
    /// buffers), else at once on the calling thread.
    /// </summary>
    private void Post(DiskJob job)
    {
        job = job with { Generation = ++_jobGeneration };
        if (_worker is null)
        {
            Complete(job, Execute(job));
            return;
        }
        _job = job;
        _ioInFlight = true;
        _status[job.DriveIndex] = AtaStatus.Bsy;
        _worker.Kick();
    }

    /// <summary>The drive's status as the guest reads it: busy while its request is on the I/O thread.</summary>
    private byte StatusOf(int drive) => _ioInFlight && _job.DriveIndex == drive ? AtaStatus.Bsy : _status[drive];

    private DiskIoResult Execute(in DiskJob job)
    {
        IDiskBackend disk = job.Drive.Disk;
        switch (job.Kind)
        {
            case JobKind.Dma:
                ReadOnlySpan<IoVector> buffers = _dmaVectors!.AsSpan(0, job.Count);
                return job.Write ? disk.WriteVectored(job.Start, buffers) : disk.ReadVectored(job.Start, buffers);
            case JobKind.PioRead:
                return disk.ReadSectors(job.Start, _buffer.AsSpan(0, job.Count));
            case JobKind.PioWrite:
                return disk.WriteSectors(job.Start, _buffer.AsSpan(0, job.Count));
            default:
                return disk.Flush();
        }
    }

    private void Complete(in DiskJob job, DiskIoResult result)
    {
        switch (job.Kind)
        {
            case JobKind.Dma: FinishDma(job, result); break;
            case JobKind.PioRead: FinishPioRead(job, result); break;
            case JobKind.PioWrite: FinishPioWrite(job, result); break;
            default: if (result.IsOk) CommandDone(); else CommandError(AtaError.Abrt); break;
        }
    }

    /// <summary>Called on the I/O thread: runs the posted request outside the lock, then completes it under the lock
    /// (unless a reset or command abort made it stale: then only the drive stops being busy).</summary>
    private void RunPostedJob()
    {
        DiskJob job;
        lock (_gate)
        {
            if (!_ioInFlight) return;
            job = _job;
        }
        DiskIoResult result = Execute(job);
        lock (_gate)
        {
            _ioInFlight = false;
            if (job.Generation == _jobGeneration) Complete(job, result);
            else if ((_control & AtaControl.Srst) == 0) _status[job.DriveIndex] = ReadyStatus; // reset while busy: ready now
        }
    }

    /// <summary>Ends a transfer as the bus master and the drive would: status, error, address registers, interrupt.</summary>
    private void FinishDma(in DiskJob job, DiskIoResult result)
    {
        byte error = 0;
        ulong done = job.Covered;
        if (job.Count > 0 && !result.IsOk)
        {
            error = result.Status == DiskIoStatus.OutOfRange ? AtaError.Idnf : job.Write ? AtaError.Abrt : AtaError.Unc;
            done = 0;
        }

        _bmStatus = (byte)((_bmStatus & ~BusMasterBits.Active) | BusMasterBits.Interrupt);
        if (error == 0 && (job.TableError || job.Covered < job.Wanted))
        {
            // A bad or too short PRD table: the bus master reports an error, the command is aborted.
            _bmStatus |= BusMasterBits.Error;
            error = AtaError.Abrt;
        }
        if (error != 0)
        {
            ReportAddress((job.Start + done) / IdeDrive.SectorSize);
            CommandError(error);
            return;
        }
        ReportAddress((job.Start + done) / IdeDrive.SectorSize - 1);
        CommandDone();
    }

    /// <summary>
    /// The thread a channel's disk requests run on (bus-master transfers, PIO blocks, flushes), so a vCPU never waits
    /// for the disk under the channel's lock: one request at a time (a channel runs one command), posted by <see cref="Kick"/>.
    /// </summary>
    private sealed class DiskWorker : IDisposable
    {
        private readonly IdeChannel _channel;
        private readonly SemaphoreSlim _posted = new(0);
        private readonly Thread _thread;
        private volatile bool _stopping;

        public DiskWorker(IdeChannel channel, string name)
        {
            _channel = channel;
            _thread = new Thread(Loop) { Name = name, IsBackground = true };
            Csvmm.Sys.ThreadConfinement.Start(_thread);
        }

        public void Kick() => _posted.Release();

        private void Loop()
        {
            Csvmm.Sys.ThreadConfinement.Enter(Csvmm.Sys.ThreadRole.DeviceIo);
            while (true)
            {
                _posted.Wait();
                if (_stopping) return;
                _channel.RunPostedJob();
            }
        }

        /// <summary>Lets a running transfer finish (its disk request cannot be taken back), then stops the thread.</summary>
        public void Dispose()
        {
            if (_stopping) return;
            _stopping = true;
            _posted.Release();
            _thread.Join();
            _posted.Dispose();
        }
    }

    /// <summary>
    /// Walks the PRD table at <see cref="_prdTable"/> and fills <see cref="_dmaVectors"/> with up to
    /// <paramref name="wanted"/> bytes of guest buffers (each entry trimmed to what is still wanted; entries that
    /// continue the previous buffer in host memory are merged). Stops at the transfer's end, at EOT, after
    /// <see cref="MaxPrdEntries"/> entries, or at the first bad entry, whose buffers are left out.
    /// </summary>
    /// <returns>False when an entry (or the table itself) is not in guest RAM, or a disk read targets ROM.</returns>
    private unsafe bool CollectPrdBuffers(ulong wanted, out int count, out ulong covered)
    {
        GuestMemory memory = _dmaMemory!;
        IoVector[] vectors = _dmaVectors!;
        uint entryAddress = _prdTable;
        count = 0;
        covered = 0;
        for (int i = 0; i < MaxPrdEntries && covered < wanted; i++)
        {
            if (!memory.TryGetSpan(new GuestAddress(entryAddress), 8, out Span<byte> entry)) return false;
            uint bufferAddress = BinaryPrimitives.ReadUInt32LittleEndian(entry) & ~1u;
            uint length = BinaryPrimitives.ReadUInt16LittleEndian(entry[4..]) & ~1u;
            if (length == 0) length = 65536;
            bool last = (BinaryPrimitives.ReadUInt16LittleEndian(entry[6..]) & 0x8000) != 0;

            int chunk = (int)Math.Min(length, wanted - covered);
            // A disk read (!_dmaWrite) writes guest memory: not into ROM.
            if (!IoVector.TryFromGuest(memory, new GuestAddress(bufferAddress), chunk, deviceWrites: !_dmaWrite, out IoVector vector))
                return false;

            // count <= i < MaxPrdEntries = vectors.Length; a merged buffer stays below 32 MiB (the largest transfer).
            if (count > 0 && IoVector.TryJoin(vectors[count - 1], vector, out IoVector joined))
                vectors[count - 1] = joined;
            else
                vectors[count++] = vector;
            covered += (ulong)chunk;
            entryAddress += 8;
            if (last) break;
        }
        return true;
    }

    private void ReadBusMaster(ulong offset, Span<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong reg = offset + (ulong)i;
                data[i] = reg switch
                {
                    0 => _bmCommand,
                    2 => _bmStatus,
                    >= 4 and <= 7 => (byte)(_prdTable >> (int)(8 * (reg - 4))),
                    _ => 0,
                };
            }
        }
    }

    private void WriteBusMaster(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong reg = offset + (ulong)i;
                byte value = data[i];
                switch (reg)
                {
                    case 0:
                        bool starting = (value & BusMasterBits.Start) != 0 && (_bmCommand & BusMasterBits.Start) == 0;
                        _bmCommand = (byte)(value & (BusMasterBits.Start | BusMasterBits.ToMemory));
                        if ((value & BusMasterBits.Start) == 0) _bmStatus &= unchecked((byte)~BusMasterBits.Active);
                        if (starting)
                        {
                            _bmStatus |= BusMasterBits.Active;
                            if (_dmaPending && _busMasterEnabled) RunDma();
                        }
                        break;
                    case 2:
                        // Error and interrupt are write-1-to-clear; the DMA-capable bits are plain storage.
                        const byte w1c = BusMasterBits.Error | BusMasterBits.Interrupt;
                        int stillSet = _bmStatus & w1c & ~value;
                        _bmStatus = (byte)((_bmStatus & BusMasterBits.Active) | stillSet | (value & BusMasterBits.DmaCapableMask));
                        break;
                    case >= 4 and <= 7:
                        int shift = (int)(8 * (reg - 4));
                        uint mask = 0xFFu << shift;
                        _prdTable = ((_prdTable & ~mask) | ((uint)value << shift)) & ~3u; // dword aligned
                        break;
                }
            }
        }
    }

    private sealed class BusMasterPorts(IdeChannel channel) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => channel.ReadBusMaster(offset, data);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => channel.WriteBusMaster(offset, data);
    }
}
