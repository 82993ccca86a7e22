using System.Text;
using Tmds.Linux;

namespace Csvmm.Kvm;

/// <summary>The KVM system device (/dev/kvm): capability queries, supported CPUID, and VM creation.</summary>
public sealed unsafe class Kvm : IDisposable
{
    public const int ExpectedApiVersion = 12;
    private readonly KvmSystemHandle _handle;

    private Kvm(KvmSystemHandle handle) => _handle = handle;

    /// <summary>Opens /dev/kvm (or <paramref name="path"/>) and checks the API version.</summary>
    public static Kvm Open(string path = "/dev/kvm")
    {
        var h = new KvmSystemHandle();
        int fd;
        byte[] p = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* pp = p) fd = LibC.open(pp, LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = LibC.errno;
            string hint = errno switch
            {
                2 => " (no KVM on this host: is the kvm module loaded?)",
                13 => " (no permission: csvmm needs read/write access to it, e.g. membership of group kvm)",
                _ => "",
            };
            throw new KvmException($"cannot open {path}: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno)}{hint}", errno);
        }
        h.Adopt(fd);
        var kvm = new Kvm(h);
        int version = Native.Ioctl(h, KvmIoctl.GetApiVersion, null);
        if (version != ExpectedApiVersion)
        {
            kvm.Dispose();
            throw new KvmException($"{path}: KVM API version {version}, expected {ExpectedApiVersion}");
        }
        return kvm;
    }

    public int CheckExtension(KvmCap cap) => Math.Max(0, Native.Ioctl(_handle, KvmIoctl.CheckExtension, (ulong)cap));

    /// <summary>Throws a <see cref="KvmException"/> naming the first capability this KVM lacks.</summary>
    public void RequireExtensions(ReadOnlySpan<KvmCap> caps)
    {
        foreach (var cap in caps)
            if (CheckExtension(cap) <= 0)
                throw new KvmException($"this host's KVM lacks the required capability KVM_CAP_{CapName(cap)}");
    }

    /// <summary>The capabilities every csvmm VM needs.</summary>
    public static ReadOnlySpan<KvmCap> RequiredCaps =>
    [
        KvmCap.Irqchip, KvmCap.UserMemory, KvmCap.SetTssAddr, KvmCap.ExtCpuid, KvmCap.Pit2,
        KvmCap.Ioeventfd, KvmCap.Irqfd, KvmCap.ImmediateExit, KvmCap.MpState,
    ];

    internal static string CapName(KvmCap cap)
    {
        var sb = new StringBuilder();
        foreach (char c in cap.ToString())
        {
            if (char.IsUpper(c) && sb.Length > 0) sb.Append('_');
            sb.Append(char.ToUpperInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>Size of the per-vCPU kvm_run mapping.</summary>
    public int VcpuMmapSize => Native.Check(_handle, KvmIoctl.GetVcpuMmapSize, null, "KVM_GET_VCPU_MMAP_SIZE");

    /// <summary>Recommended (soft) and maximum vCPU counts.</summary>
    public int RecommendedVcpus => Math.Max(4, CheckExtension(KvmCap.NrVcpus));
    public int MaxVcpus => Math.Max(RecommendedVcpus, CheckExtension(KvmCap.MaxVcpus));

    /// <summary>KVM_GET_SUPPORTED_CPUID.</summary>
    public KvmCpuidEntry2[] GetSupportedCpuid()
    {
        for (int n = 64; n <= 4096; n *= 2)
        {
            int bytes = sizeof(KvmCpuid2) + n * sizeof(KvmCpuidEntry2);
            byte[] buf = new byte[bytes];
            fixed (byte* p = buf)
            {
                ((KvmCpuid2*)p)->nent = (uint)n;
                int r = Native.Ioctl(_handle, KvmIoctl.GetSupportedCpuid, p);
                if (r == -7 /* E2BIG */) continue;
                if (r < 0) KvmException.ThrowErrno("KVM_GET_SUPPORTED_CPUID", -r);
                int count = (int)((KvmCpuid2*)p)->nent;
                var entries = new KvmCpuidEntry2[count];
                new ReadOnlySpan<KvmCpuidEntry2>(p + sizeof(KvmCpuid2), count).CopyTo(entries);
                return entries;
            }
        }
        throw new KvmException("KVM_GET_SUPPORTED_CPUID: too many entries");
    }

    /// <summary>KVM_CREATE_VM (default machine type).</summary>
    public KvmVm CreateVm()
    {
        var h = new KvmVmHandle();
        int fd = Native.Ioctl(_handle, KvmIoctl.CreateVm, 0UL);
        if (fd < 0) KvmException.ThrowErrno("KVM_CREATE_VM", -fd);
        h.Adopt(fd);
        return new KvmVm(this, h);
    }

    public void Dispose() => _handle.Dispose();
}
