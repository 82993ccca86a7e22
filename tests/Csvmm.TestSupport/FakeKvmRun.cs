using System.Buffers.Binary;
using Csvmm.Kvm;

namespace Csvmm.TestSupport;

/// <summary>
/// Byte offsets in <c>struct kvm_run</c> as &lt;linux/kvm.h&gt; lays it out on x86-64, written out as literals (not taken
/// from csvmm's C# mirrors, which the fake pages test): Csvmm.Kvm.Tests' LayoutTests prove the mirrors against gcc, and
/// KvmRunViewTests read pages built here through them.
/// </summary>
public static class KvmRunOffsets
{
    public const int RequestInterruptWindow = 0, ImmediateExit = 1, ExitReason = 8;
    public const int ReadyForInjection = 12, IfFlag = 13, Flags = 14, Cr8 = 16, ApicBase = 24;

    /// <summary>The exit union (<c>io</c>, <c>mmio</c>, <c>internal</c>, <c>system_event</c>...).</summary>
    public const int ExitUnion = 32;

    public const int IoDirection = ExitUnion, IoSize = ExitUnion + 1, IoPort = ExitUnion + 2, IoCount = ExitUnion + 4, IoDataOffset = ExitUnion + 8;
    public const int MmioPhysAddr = ExitUnion, MmioData = ExitUnion + 8, MmioLen = ExitUnion + 16, MmioIsWrite = ExitUnion + 20;
    public const int SystemEventType = ExitUnion, SystemEventData = ExitUnion + 8;
}

/// <summary>
/// Fake kvm_run pages (byte arrays) filled as KVM fills them for one exit, for tests that drive
/// <see cref="KvmRunView"/> and the exit dispatcher without a vCPU.
/// </summary>
public static class FakeKvmRun
{
    /// <summary>One page: the smallest mapping a test usually needs.</summary>
    public const int PageSize = 4096;

    /// <summary>What KVM_GET_VCPU_MMAP_SIZE reports on x86-64: kvm_run, then the PIO data page (KVM_PIO_PAGE_OFFSET = 1), then the coalesced-MMIO ring.</summary>
    public const int VcpuMmapSize = 3 * PageSize;

    /// <summary>Where KVM puts port-I/O data in a <see cref="VcpuMmapSize"/> mapping (the second page).</summary>
    public const int PioDataOffset = PageSize;

    /// <summary>A zeroed page of <paramref name="size"/> bytes whose exit_reason is <paramref name="reason"/>.</summary>
    public static byte[] Exit(KvmExitReason reason, int size = PageSize)
    {
        var page = new byte[size];
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(KvmRunOffsets.ExitReason), (uint)reason);
        return page;
    }

    /// <summary>A KVM_EXIT_IO page: <paramref name="count"/> accesses of <paramref name="size"/> bytes at <paramref name="port"/>, data at <paramref name="dataOffset"/> (left zero).</summary>
    public static byte[] Io(byte direction, byte size, ushort port, uint count, ulong dataOffset, int pageSize = PageSize)
    {
        byte[] page = Exit(KvmExitReason.Io, pageSize);
        page[KvmRunOffsets.IoDirection] = direction;
        page[KvmRunOffsets.IoSize] = size;
        BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(KvmRunOffsets.IoPort), port);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(KvmRunOffsets.IoCount), count);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(KvmRunOffsets.IoDataOffset), dataOffset);
        return page;
    }

    /// <summary>A KVM_EXIT_MMIO page: <paramref name="length"/> bytes at <paramref name="address"/>, the data field holding <paramref name="data"/> (little-endian).</summary>
    public static byte[] Mmio(ulong address, uint length, bool isWrite, ulong data = 0, int pageSize = PageSize)
    {
        byte[] page = Exit(KvmExitReason.Mmio, pageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(KvmRunOffsets.MmioPhysAddr), address);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(KvmRunOffsets.MmioData), data);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(KvmRunOffsets.MmioLen), length);
        page[KvmRunOffsets.MmioIsWrite] = isWrite ? (byte)1 : (byte)0;
        return page;
    }

    /// <summary>A KVM_EXIT_SYSTEM_EVENT page of event <paramref name="type"/> (KVM_SYSTEM_EVENT_*).</summary>
    public static byte[] SystemEvent(uint type, int pageSize = PageSize)
    {
        byte[] page = Exit(KvmExitReason.SystemEvent, pageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(KvmRunOffsets.SystemEventType), type);
        return page;
    }
}
