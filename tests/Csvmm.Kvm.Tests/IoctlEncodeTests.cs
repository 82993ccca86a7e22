namespace Csvmm.Kvm.Tests;

/// <summary>
/// Ioctl.Encode and the _IO/_IOR/_IOW/_IOWR helpers, checked bit by bit and against request numbers
/// well known from strace output (independent of the C probe).
/// </summary>
public sealed class IoctlEncodeTests
{
    [Theory]
    [InlineData(Ioctl.Read | Ioctl.Write, 0u, 0u, 0u, 0xC000_0000u)]   // dir: bits 30-31
    [InlineData(Ioctl.Read, 0u, 0u, 0u, 0x8000_0000u)]
    [InlineData(Ioctl.Write, 0u, 0u, 0u, 0x4000_0000u)]
    [InlineData(Ioctl.None, 0u, 0u, 0x3FFFu, 0x3FFF_0000u)]           // size: bits 16-29
    [InlineData(Ioctl.None, 0xFFu, 0u, 0u, 0x0000_FF00u)]             // type: bits 8-15
    [InlineData(Ioctl.None, 0u, 0xFFu, 0u, 0x0000_00FFu)]             // nr: bits 0-7
    [InlineData(Ioctl.Read | Ioctl.Write, 0xFFu, 0xFFu, 0x3FFFu, 0xFFFF_FFFFu)]
    public void FieldsLandInTheirBits(uint dir, uint type, uint nr, uint size, uint expected) =>
        Assert.Equal(expected, Ioctl.Encode(dir, type, nr, size));

    [Theory]
    [InlineData(0x4000u)]
    [InlineData(0x10000u)]
    [InlineData(uint.MaxValue)]
    public void SizeThatDoesNotFitFourteenBitsIsRefused(uint size)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ioctl.Encode(Ioctl.Read, Ioctl.KvmType, 0, size));
        Assert.Equal("size", e.ParamName);
    }

    [Fact]
    public void HelpersUseKvmTypeAndTheArgumentSize()
    {
        Assert.Equal(0xAE80u, Ioctl.IO(0x80));                         // KVM_RUN
        Assert.Equal(0x8090_AE81u, Ioctl.IOR<KvmRegs>(0x81));          // KVM_GET_REGS, 144-byte kvm_regs
        Assert.Equal(0x4090_AE82u, Ioctl.IOW<KvmRegs>(0x82));          // KVM_SET_REGS
        Assert.Equal(0xC008_AE05u, Ioctl.IOWR<KvmCpuid2>(0x05));       // KVM_GET_SUPPORTED_CPUID
        Assert.Equal(0x4008_AE48u, Ioctl.IOW<ulong>(0x48));            // KVM_SET_IDENTITY_MAP_ADDR
    }

    [Fact]
    public void KvmIoctlHoldsTheWellKnownRequestNumbers()
    {
        Assert.Equal(0xAE00u, KvmIoctl.GetApiVersion);
        Assert.Equal(0xAE01u, KvmIoctl.CreateVm);
        Assert.Equal(0xAE41u, KvmIoctl.CreateVcpu);
        Assert.Equal(0xAE80u, KvmIoctl.Run);
        Assert.Equal(0x8138_AE83u, KvmIoctl.GetSregs);                 // 312-byte kvm_sregs
        Assert.Equal(0x4020_AE46u, KvmIoctl.SetUserMemoryRegion);
        Assert.Equal(0x4008_AE61u, KvmIoctl.IrqLine);
        Assert.Equal(0x4020_AE76u, KvmIoctl.Irqfd);
        Assert.Equal(0x4040_AE77u, KvmIoctl.CreatePit2);
        Assert.Equal(0x4040_AE79u, KvmIoctl.Ioeventfd);
        Assert.Equal(0x4068_AEA3u, KvmIoctl.EnableCap);                // 104-byte kvm_enable_cap
        Assert.Equal(0x4008_AE90u, KvmIoctl.SetCpuid2);
        Assert.Equal(0x8400_AE8Eu, KvmIoctl.GetLapic);                 // 1024-byte kvm_lapic_state
        Assert.Equal(0x8040_AE9Fu, KvmIoctl.GetVcpuEvents);            // 64-byte kvm_vcpu_events
    }
}
