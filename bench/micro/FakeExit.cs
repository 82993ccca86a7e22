using System.Runtime.InteropServices;
using Csvmm.Kvm;

namespace Csvmm.Bench.Micro;

/// <summary>
/// kvm_run pages built in ordinary byte arrays, filled the way KVM fills them for one exit, so the dispatcher can be
/// driven without a VM. The page is as large as KVM's vCPU mapping (3 pages) and port-I/O data sits where KVM puts
/// it, at the start of the second page.
/// </summary>
internal static class FakeExit
{
    public const int PageSize = 3 * 4096;
    public const int IoDataOffset = 4096;

    /// <summary>A single (non-string) port-I/O exit of <paramref name="size"/> bytes.</summary>
    public static byte[] PortIo(ushort port, byte size, bool write, ulong value)
    {
        var page = new byte[PageSize];
        var view = new KvmRunView(page);
        view.Header.exit_reason = (uint)KvmExitReason.Io;
        ref KvmRunIo io = ref view.Io;
        io.direction = write ? KvmRunIo.Out : KvmRunIo.In;
        io.size = size;
        io.port = port;
        io.count = 1;
        io.data_offset = IoDataOffset;
        Devices.BusData.Set(page.AsSpan(IoDataOffset, size), value);
        return page;
    }

    /// <summary>An MMIO exit of <paramref name="length"/> bytes (at most 8) at <paramref name="address"/>.</summary>
    public static byte[] Mmio(ulong address, uint length, bool write, ulong value)
    {
        var page = new byte[PageSize];
        var view = new KvmRunView(page);
        view.Header.exit_reason = (uint)KvmExitReason.Mmio;
        ref KvmRunMmio mmio = ref view.Mmio;
        mmio.phys_addr = address;
        mmio.len = length;
        mmio.is_write = write ? (byte)1 : (byte)0;
        Devices.BusData.Set(view.MmioData, value);
        return page;
    }
}

/// <summary>
/// A bus device that ignores writes and reads as all-ones: the cost of the bus and dispatcher alone. It counts
/// accesses (a plain increment, single-threaded here) so the set-up can prove the fake exits reach it.
/// </summary>
internal sealed class NullDevice : Devices.IBusDevice
{
    public long Accesses;

    public void Read(ulong offset, Span<byte> data)
    {
        Accesses++;
        data.Fill(0xFF);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Accesses++;
}
