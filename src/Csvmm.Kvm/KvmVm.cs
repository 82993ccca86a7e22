using Csvmm.Sys;

namespace Csvmm.Kvm;

/// <summary>A KVM virtual machine: memory slots, the in-kernel irqchip and PIT, interrupt lines, eventfds, vCPUs.</summary>
public sealed unsafe class KvmVm : IDisposable
{
    private readonly Kvm _kvm;
    private readonly KvmVmHandle _handle;

    internal KvmVm(Kvm kvm, KvmVmHandle handle)
    {
        _kvm = kvm;
        _handle = handle;
    }

    public Kvm System => _kvm;

    public int CheckExtension(KvmCap cap) => Math.Max(0, Native.Ioctl(_handle, KvmIoctl.CheckExtension, (ulong)cap));

    /// <param name="logDirty">KVM_MEM_LOG_DIRTY_PAGES: KVM records the pages the guest writes (<see cref="GetDirtyLog"/>).
    /// Re-registering a slot with the same address and size only changes its flags.</param>
    public void SetUserMemoryRegion(uint slot, ulong guestPhysAddr, ulong size, nint hostAddress, bool readOnly, bool logDirty = false)
    {
        var region = new KvmUserspaceMemoryRegion
        {
            slot = slot,
            flags = (readOnly ? KvmUserspaceMemoryRegion.FlagReadonly : 0) | (logDirty ? KvmUserspaceMemoryRegion.FlagLogDirtyPages : 0),
            guest_phys_addr = guestPhysAddr,
            memory_size = size,
            userspace_addr = (ulong)hostAddress,
        };
        Native.Check(_handle, KvmIoctl.SetUserMemoryRegion, &region,
            $"KVM_SET_USER_MEMORY_REGION (slot {slot}, 0x{guestPhysAddr:x}+0x{size:x})");
    }

    /// <summary>
    /// KVM_GET_DIRTY_LOG: the pages of <paramref name="slot"/> written since the last call (or since logging was turned
    /// on), one bit per page; KVM clears its log and write-protects those pages again. <paramref name="bitmap"/> must hold
    /// a bit for every page of the slot, rounded up to 64.
    /// </summary>
    public void GetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* p = bitmap)
        {
            var log = new KvmDirtyLog { slot = slot, dirty_bitmap = (ulong)p };
            Native.Check(_handle, KvmIoctl.GetDirtyLog, &log, $"KVM_GET_DIRTY_LOG (slot {slot})");
        }
    }

    public void SetTssAddr(ulong address)
    {
        int r = Native.Ioctl(_handle, KvmIoctl.SetTssAddr, address);
        if (r < 0) KvmException.ThrowErrno("KVM_SET_TSS_ADDR", -r);
    }

    public void SetIdentityMapAddr(ulong address) =>
        Native.Check(_handle, KvmIoctl.SetIdentityMapAddr, &address, "KVM_SET_IDENTITY_MAP_ADDR");

    public void CreateIrqchip() => Native.Check(_handle, KvmIoctl.CreateIrqchip, null, "KVM_CREATE_IRQCHIP");

    public void CreatePit2()
    {
        var cfg = new KvmPitConfig { flags = KvmPitConfig.FlagSpeakerDummy };
        Native.Check(_handle, KvmIoctl.CreatePit2, &cfg, "KVM_CREATE_PIT2");
    }

    /// <summary>KVM_SET_GSI_ROUTING: replaces the whole GSI routing table.</summary>
    public void SetGsiRouting(ReadOnlySpan<KvmIrqRoutingEntry> entries)
    {
        byte[] buf = new byte[sizeof(KvmIrqRouting) + entries.Length * sizeof(KvmIrqRoutingEntry)];
        fixed (byte* p = buf)
        {
            ((KvmIrqRouting*)p)->nr = (uint)entries.Length;
            entries.CopyTo(new Span<KvmIrqRoutingEntry>(p + sizeof(KvmIrqRouting), entries.Length));
            Native.Check(_handle, KvmIoctl.SetGsiRouting, p, "KVM_SET_GSI_ROUTING");
        }
    }

    /// <summary>KVM_IRQ_LINE: set the level of a GSI on the in-kernel PIC/IOAPIC. Returns false on failure (no throw: vCPU path).</summary>
    public bool SetIrqLine(uint gsi, bool level)
    {
        var l = new KvmIrqLevel { irq = gsi, level = level ? 1u : 0u };
        return Native.Ioctl(_handle, KvmIoctl.IrqLine, &l) >= 0;
    }

    /// <summary>KVM_IOEVENTFD: make a guest write of <paramref name="length"/> bytes to <paramref name="address"/> signal <paramref name="fd"/> without a userspace exit.</summary>
    public void RegisterIoeventfd(EventFdHandle fd, ulong address, uint length, bool pio, ulong? datamatch = null, bool deassign = false)
    {
        var e = new KvmIoeventfd
        {
            addr = address,
            len = length,
            fd = fd.Fd,
            flags = (pio ? KvmIoeventfd.FlagPio : 0) | (datamatch.HasValue ? KvmIoeventfd.FlagDatamatch : 0)
                    | (deassign ? KvmIoeventfd.FlagDeassign : 0),
            datamatch = datamatch ?? 0,
        };
        Native.Check(_handle, KvmIoctl.Ioeventfd, &e, $"KVM_IOEVENTFD (0x{address:x})");
    }

    /// <summary>KVM_IRQFD: signalling <paramref name="fd"/> injects <paramref name="gsi"/>.</summary>
    public void RegisterIrqfd(EventFdHandle fd, uint gsi, bool deassign = false)
    {
        var e = new KvmIrqfd { fd = (uint)fd.Fd, gsi = gsi, flags = deassign ? KvmIrqfd.FlagDeassign : 0 };
        Native.Check(_handle, KvmIoctl.Irqfd, &e, $"KVM_IRQFD (gsi {gsi})");
    }

    public KvmVcpu CreateVcpu(int id)
    {
        var h = new KvmVcpuHandle();
        int fd = Native.Ioctl(_handle, KvmIoctl.CreateVcpu, (ulong)id);
        if (fd < 0) KvmException.ThrowErrno($"KVM_CREATE_VCPU {id}", -fd);
        h.Adopt(fd);
        return new KvmVcpu(id, h, _kvm.VcpuMmapSize);
    }

    /// <summary>KVM_GET_IRQCHIP for one controller (<see cref="KvmIrqRoutingEntry.IrqchipPicMaster"/>, PicSlave, Ioapic).</summary>
    public KvmIrqchip GetIrqchip(uint chipId)
    {
        var c = new KvmIrqchip { chip_id = chipId };
        Native.Check(_handle, KvmIoctl.GetIrqchip, &c, "KVM_GET_IRQCHIP");
        return c;
    }

    public void SetIrqchip(in KvmIrqchip c) { fixed (KvmIrqchip* p = &c) Native.Check(_handle, KvmIoctl.SetIrqchip, p, "KVM_SET_IRQCHIP"); }
    public KvmPitState2 GetPit2() { KvmPitState2 r; Native.Check(_handle, KvmIoctl.GetPit2, &r, "KVM_GET_PIT2"); return r; }
    public void SetPit2(in KvmPitState2 s) { fixed (KvmPitState2* p = &s) Native.Check(_handle, KvmIoctl.SetPit2, p, "KVM_SET_PIT2"); }
    public KvmClockData GetClock() { KvmClockData r; Native.Check(_handle, KvmIoctl.GetClock, &r, "KVM_GET_CLOCK"); return r; }
    public void SetClock(in KvmClockData c) { fixed (KvmClockData* p = &c) Native.Check(_handle, KvmIoctl.SetClock, p, "KVM_SET_CLOCK"); }

    public void Dispose() => _handle.Dispose();
}
