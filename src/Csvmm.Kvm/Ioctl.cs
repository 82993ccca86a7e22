namespace Csvmm.Kvm;

/// <summary>
/// Linux ioctl request encoding (asm-generic/ioctl.h): dir(2) | size(14) | type(8) | nr(8).
/// KVM's request numbers are computed from the argument struct's size, never pasted as hex.
/// </summary>
public static unsafe class Ioctl
{
    public const uint None = 0, Write = 1, Read = 2;
    public const uint KvmType = 0xAE;

    public static uint Encode(uint dir, uint type, uint nr, uint size)
    {
        if (size >= 1u << 14) throw new ArgumentOutOfRangeException(nameof(size));
        if (dir > 3) throw new ArgumentOutOfRangeException(nameof(dir));
        if (type > 0xFF) throw new ArgumentOutOfRangeException(nameof(type));
        if (nr > 0xFF) throw new ArgumentOutOfRangeException(nameof(nr));
        return (dir << 30) | (size << 16) | (type << 8) | nr;
    }

    public static uint IO(uint nr) => Encode(None, KvmType, nr, 0);
    public static uint IOR<T>(uint nr) where T : unmanaged => Encode(Read, KvmType, nr, (uint)sizeof(T));
    public static uint IOW<T>(uint nr) where T : unmanaged => Encode(Write, KvmType, nr, (uint)sizeof(T));
    public static uint IOWR<T>(uint nr) where T : unmanaged => Encode(Read | Write, KvmType, nr, (uint)sizeof(T));
}

/// <summary>The KVM request numbers csvmm uses (linux/kvm.h), each derived from its argument type.</summary>
public static class KvmIoctl
{
    // system (/dev/kvm)
    public static readonly uint GetApiVersion = Ioctl.IO(0x00);
    public static readonly uint CreateVm = Ioctl.IO(0x01);
    public static readonly uint CheckExtension = Ioctl.IO(0x03);
    public static readonly uint GetVcpuMmapSize = Ioctl.IO(0x04);
    public static readonly uint GetSupportedCpuid = Ioctl.IOWR<KvmCpuid2>(0x05);
    // VM
    public static readonly uint CreateVcpu = Ioctl.IO(0x41);
    public static readonly uint SetUserMemoryRegion = Ioctl.IOW<KvmUserspaceMemoryRegion>(0x46);
    public static readonly uint GetDirtyLog = Ioctl.IOW<KvmDirtyLog>(0x42);
    public static readonly uint SetTssAddr = Ioctl.IO(0x47);
    public static readonly uint SetIdentityMapAddr = Ioctl.IOW<ulong>(0x48);
    public static readonly uint CreateIrqchip = Ioctl.IO(0x60);
    public static readonly uint IrqLine = Ioctl.IOW<KvmIrqLevel>(0x61);
    public static readonly uint SetGsiRouting = Ioctl.IOW<KvmIrqRouting>(0x6A);
    public static readonly uint Irqfd = Ioctl.IOW<KvmIrqfd>(0x76);
    public static readonly uint CreatePit2 = Ioctl.IOW<KvmPitConfig>(0x77);
    public static readonly uint Ioeventfd = Ioctl.IOW<KvmIoeventfd>(0x79);
    public static readonly uint EnableCap = Ioctl.IOW<KvmEnableCap>(0xA3);
    public static readonly uint GetIrqchip = Ioctl.IOWR<KvmIrqchip>(0x62);
    public static readonly uint SetIrqchip = Ioctl.IOR<KvmIrqchip>(0x63); // sic: the kernel declares SET_IRQCHIP as _IOR
    public static readonly uint SetClock = Ioctl.IOW<KvmClockData>(0x7B);
    public static readonly uint GetClock = Ioctl.IOR<KvmClockData>(0x7C);
    public static readonly uint GetPit2 = Ioctl.IOR<KvmPitState2>(0x9F);
    public static readonly uint SetPit2 = Ioctl.IOW<KvmPitState2>(0xA0);
    // vCPU
    public static readonly uint Run = Ioctl.IO(0x80);
    public static readonly uint GetRegs = Ioctl.IOR<KvmRegs>(0x81);
    public static readonly uint SetRegs = Ioctl.IOW<KvmRegs>(0x82);
    public static readonly uint GetSregs = Ioctl.IOR<KvmSregs>(0x83);
    public static readonly uint SetSregs = Ioctl.IOW<KvmSregs>(0x84);
    public static readonly uint GetMsrs = Ioctl.IOWR<KvmMsrs>(0x88);
    public static readonly uint SetMsrs = Ioctl.IOW<KvmMsrs>(0x89);
    public static readonly uint GetFpu = Ioctl.IOR<KvmFpu>(0x8C);
    public static readonly uint SetFpu = Ioctl.IOW<KvmFpu>(0x8D);
    public static readonly uint GetLapic = Ioctl.IOR<KvmLapicState>(0x8E);
    public static readonly uint SetLapic = Ioctl.IOW<KvmLapicState>(0x8F);
    public static readonly uint SetCpuid2 = Ioctl.IOW<KvmCpuid2>(0x90);
    public static readonly uint GetMpState = Ioctl.IOR<KvmMpState>(0x98);
    public static readonly uint SetMpState = Ioctl.IOW<KvmMpState>(0x99);
    public static readonly uint GetVcpuEvents = Ioctl.IOR<KvmVcpuEvents>(0x9F);
    public static readonly uint SetVcpuEvents = Ioctl.IOW<KvmVcpuEvents>(0xA0);
    public static readonly uint GetDebugregs = Ioctl.IOR<KvmDebugregs>(0xA1);
    public static readonly uint SetDebugregs = Ioctl.IOW<KvmDebugregs>(0xA2);
    public static readonly uint GetXsave = Ioctl.IOR<KvmXsave>(0xA4);
    public static readonly uint SetXsave = Ioctl.IOW<KvmXsave>(0xA5);
    public static readonly uint GetXcrs = Ioctl.IOR<KvmXcrs>(0xA6);
    public static readonly uint SetXcrs = Ioctl.IOW<KvmXcrs>(0xA7);
}

/// <summary>KVM_CAP_* numbers csvmm checks (linux/kvm.h).</summary>
public enum KvmCap
{
    Irqchip = 0,
    Hlt = 1,
    UserMemory = 3,
    SetTssAddr = 4,
    ExtCpuid = 7,
    NrVcpus = 9,
    MpState = 14,
    IrqRouting = 25,
    Irqfd = 32,
    Pit2 = 33,
    Ioeventfd = 36,
    SetIdentityMapAddr = 37,
    VcpuEvents = 41,
    MaxVcpus = 66,
    SyncRegs = 74,
    ReadonlyMem = 81,
    ImmediateExit = 136,
}
