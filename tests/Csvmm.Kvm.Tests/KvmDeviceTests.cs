using System.Runtime.InteropServices;
using Csvmm.TestSupport;

using Csvmm.Sys;

namespace Csvmm.Kvm.Tests;

/// <summary>
/// The bindings against the running kernel's /dev/kvm: every request number csvmm uses must be accepted,
/// and a tiny real-mode guest's exits must read correctly through <see cref="KvmRunView"/>.
/// By project rule these tests FAIL (never skip) on a host without /dev/kvm.
/// </summary>
public sealed unsafe class KvmDeviceTests
{
    private const uint MsrSysenterCs = 0x174;

    [Fact]
    public void OpenChecksApiVersionAndTheRequiredCapsArePresent()
    {
        using Kvm kvm = OpenKvm(); // Open throws unless KVM_GET_API_VERSION returns 12

        Assert.Equal(12, Kvm.ExpectedApiVersion);
        foreach (KvmCap cap in Kvm.RequiredCaps)
            Assert.True(kvm.CheckExtension(cap) > 0, $"KVM_CAP_{Kvm.CapName(cap)} is not reported by this host's KVM");
        kvm.RequireExtensions(Kvm.RequiredCaps);
        Assert.True(kvm.VcpuMmapSize >= 4096 && kvm.VcpuMmapSize % 4096 == 0, $"KVM_GET_VCPU_MMAP_SIZE = {kvm.VcpuMmapSize}");
        Assert.InRange(kvm.MaxVcpus, kvm.RecommendedVcpus, int.MaxValue);
    }

    [Fact]
    public void OpenRefusesSomethingThatIsNotKvm()
    {
        var notKvm = Assert.Throws<KvmException>(() => Kvm.Open("/dev/null"));
        Assert.Contains("API version", notKvm.Message, StringComparison.Ordinal);

        var missing = Assert.Throws<KvmException>(() => Kvm.Open("/nonexistent/kvm"));
        Assert.Equal(2, missing.Errno);
        Assert.Contains("/nonexistent/kvm", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SupportedCpuidHasTheBasicAndExtendedLeaves()
    {
        using Kvm kvm = OpenKvm();

        KvmCpuidEntry2[] entries = kvm.GetSupportedCpuid();

        Assert.NotEmpty(entries);
        KvmCpuidEntry2 leaf0 = Assert.Single(entries, e => e.function == 0);
        Assert.True(leaf0.eax >= 1, $"CPUID.0:EAX (max basic leaf) = {leaf0.eax}");
        Assert.Contains(entries, e => e.function == 1);
        Assert.Contains(entries, e => e.function == 0x8000_0000);
    }

    [Fact]
    public void RegistersAndSegmentsRoundTripThroughAVcpu()
    {
        using Kvm kvm = OpenKvm();
        using KvmVm vm = kvm.CreateVm();
        using KvmVcpu vcpu = vm.CreateVcpu(0);

        // The architectural reset state proves the offsets of rip/rflags and of the segment fields.
        KvmRegs reset = vcpu.GetRegs();
        Assert.Equal(0xFFF0ul, reset.rip);
        Assert.Equal(0x2ul, reset.rflags);
        KvmSregs resetSregs = vcpu.GetSregs();
        Assert.Equal(0xF000, resetSregs.cs.selector);
        Assert.Equal(0xFFFF_0000ul, resetSregs.cs.@base);
        Assert.Equal(0xFFFFu, resetSregs.cs.limit);
        Assert.Equal(0xFFFF, resetSregs.gdt.limit);

        var regs = new KvmRegs
        {
            rax = 0x1111_0000_0000_0001,
            rbx = 0x2222_0000_0000_0002,
            rcx = 0x3333_0000_0000_0003,
            rdx = 0x4444_0000_0000_0004,
            rsi = 0x5555_0000_0000_0005,
            rdi = 0x6666_0000_0000_0006,
            rsp = 0x7777_0000_0000_0007,
            rbp = 0x8888_0000_0000_0008,
            r8 = 0x9999_0000_0000_0009,
            r9 = 0xAAAA_0000_0000_000A,
            r10 = 0xBBBB_0000_0000_000B,
            r11 = 0xCCCC_0000_0000_000C,
            r12 = 0xDDDD_0000_0000_000D,
            r13 = 0xEEEE_0000_0000_000E,
            r14 = 0xFFFF_0000_0000_000F,
            r15 = 0x1234_0000_0000_0010,
            rip = 0x1000,
            rflags = 0x2 | 0x40 | 0x800, // ZF, OF
        };
        vcpu.SetRegs(regs);
        Assert.Equal(regs, vcpu.GetRegs());

        KvmSregs sregs = resetSregs;
        sregs.ds.@base = 0x12340;
        sregs.ds.selector = 0x1234;
        sregs.idt.@base = 0x5000;
        sregs.idt.limit = 0x3FF;
        vcpu.SetSregs(sregs);
        KvmSregs back = vcpu.GetSregs();
        Assert.Equal(0x12340ul, back.ds.@base);
        Assert.Equal(0x1234, back.ds.selector);
        Assert.Equal(0x5000ul, back.idt.@base);
        Assert.Equal(0x3FF, back.idt.limit);
        Assert.Equal(resetSregs.cs, back.cs);
    }

    [Fact]
    public void EveryVmAndVcpuRequestIsAcceptedByTheKernel()
    {
        using Kvm kvm = OpenKvm();
        using KvmVm vm = kvm.CreateVm();
        Assert.True(vm.CheckExtension(KvmCap.Irqchip) > 0);
        vm.SetTssAddr(0xFFFB_D000);
        vm.SetIdentityMapAddr(0xFFFB_C000);
        vm.CreateIrqchip();
        vm.CreatePit2();

        nint ram = (nint)NativeMemory.AlignedAlloc(0x10000, 0x1000);
        try
        {
            vm.SetUserMemoryRegion(0, 0, 0x10000, ram, readOnly: false);
            using (KvmVcpu vcpu = vm.CreateVcpu(0))
            {
                vcpu.SetCpuid(kvm.GetSupportedCpuid());

                KvmFpu fpu = vcpu.GetFpu();
                Assert.Equal(0x37F, fpu.fcw);       // FNINIT state
                fpu.fcw = 0x27F;
                fpu.xmm[16 * 3 + 5] = 0xA5;         // xmm3, byte 5
                vcpu.SetFpu(fpu);
                KvmFpu fpuBack = vcpu.GetFpu();
                Assert.Equal(0x27F, fpuBack.fcw);   // (KVM_GET/SET_FPU do not transfer mxcsr: not testable here)
                Assert.Equal(0xA5, fpuBack.xmm[16 * 3 + 5]);

                KvmMsrEntry[] written = [new() { index = MsrSysenterCs, data = 0x10 }];
                vcpu.SetMsrs(written);
                KvmMsrEntry[] read = [new() { index = MsrSysenterCs }];
                Assert.Equal(1, vcpu.GetMsrs(read));
                Assert.Equal(0x10ul, read[0].data);

                Assert.Equal(KvmMpState.Runnable, vcpu.GetMpState());
                vcpu.SetMpState(KvmMpState.Runnable);

                KvmLapicState lapic = vcpu.GetLapic();
                Assert.Equal(0x14u, lapic.regs[0x30] & 0xFFu); // LAPIC version register: an integrated xAPIC (0x14)
                vcpu.SetLapic(lapic);

                KvmVcpuEvents events = vcpu.GetVcpuEvents();
                Assert.Equal(0, events.exception_injected);
                Assert.Equal(0, events.triple_fault_pending);

                // The state a snapshot carries: each read back and written again unchanged.
                KvmXsave xsave = vcpu.GetXsave();
                Assert.Equal(0x37Fu, xsave.region[0] & 0xFFFF); // the FXSAVE image's FCW
                vcpu.SetXsave(xsave);
                KvmXcrs xcrs = vcpu.GetXcrs();
                Assert.InRange(xcrs.nr_xcrs, 0u, (uint)KvmXcrs.MaxXcrs);
                if (xcrs.nr_xcrs > 0)                           // a host with XSAVE: XCR0 first, x87 always set
                {
                    Assert.Equal(0u, xcrs.Get(0).Xcr);
                    Assert.Equal(1ul, xcrs.Get(0).Value & 1);
                }
                vcpu.SetXcrs(xcrs);
                KvmDebugregs dr = vcpu.GetDebugregs();
                Assert.Equal(0x400ul, dr.dr7);                 // DR7's reset value
                vcpu.SetDebugregs(dr);
            }
            foreach (uint chip in new[] { KvmIrqRoutingEntry.IrqchipPicMaster, KvmIrqRoutingEntry.IrqchipPicSlave, KvmIrqRoutingEntry.IrqchipIoapic })
            {
                KvmIrqchip state = vm.GetIrqchip(chip);
                Assert.Equal(chip, state.chip_id);
                vm.SetIrqchip(state);
            }
            KvmPitState2 pit = vm.GetPit2();
            vm.SetPit2(pit);
            KvmClockData clock = vm.GetClock();
            vm.SetClock(new KvmClockData { clock = clock.clock });

            Assert.True(vm.SetIrqLine(4, true), "KVM_IRQ_LINE refused");
            Assert.True(vm.SetIrqLine(4, false), "KVM_IRQ_LINE refused");

            using EventFdHandle irq = EventFdHandle.Create();
            vm.RegisterIrqfd(irq, gsi: 5);
            vm.RegisterIrqfd(irq, gsi: 5, deassign: true);

            using EventFdHandle notify = EventFdHandle.Create();
            vm.RegisterIoeventfd(notify, 0xD000_0000, 4, pio: false, datamatch: 7);
            vm.RegisterIoeventfd(notify, 0xD000_0000, 4, pio: false, datamatch: 7, deassign: true);
            vm.RegisterIoeventfd(notify, 0x510, 2, pio: true);
        }
        finally
        {
            vm.Dispose(); // the VM must let go of the RAM before it is freed
            NativeMemory.AlignedFree((void*)ram);
        }
    }

    /// <summary>
    /// A real-mode guest (no in-kernel irqchip, so hlt exits to us) performs port and MMIO reads and writes;
    /// each exit is read through KvmRunView and answered through its data spans.
    /// </summary>
    [Fact]
    public void GuestExitsReadAndAnswerThroughKvmRunView()
    {
        byte[] code =
        [
            0xB0, 0x42,             // mov al, 0x42
            0xE6, 0x10,             // out 0x10, al
            0xA2, 0x00, 0x80,       // mov [0x8000], al      (no memory there: MMIO)
            0xE4, 0x11,             // in al, 0x11
            0xA2, 0x01, 0x80,       // mov [0x8001], al
            0xA1, 0x02, 0x80,       // mov ax, [0x8002]
            0xE7, 0x12,             // out 0x12, ax
            0xBE, 0x00, 0x11,       // mov si, 0x1100
            0xB9, 0x03, 0x00,       // mov cx, 3
            0xBA, 0x13, 0x00,       // mov dx, 0x13
            0xF3, 0x6E,             // rep outsb
            0xF4,                   // hlt
        ];
        const int CodeAt = 0x1000, StringAt = 0x1100, RamSize = 0x2000;

        using Kvm kvm = OpenKvm();
        using KvmVm vm = kvm.CreateVm();
        vm.SetTssAddr(0xFFFB_D000);
        byte* ram = (byte*)NativeMemory.AlignedAlloc(RamSize, 0x1000);
        try
        {
            var guest = new Span<byte>(ram, RamSize);
            guest.Clear();
            code.CopyTo(guest[CodeAt..]);
            "abc"u8.CopyTo(guest[StringAt..]);
            vm.SetUserMemoryRegion(0, 0, RamSize, (nint)ram, readOnly: false);

            using KvmVcpu vcpu = vm.CreateVcpu(0);
            KvmSregs sregs = vcpu.GetSregs();
            sregs.cs.@base = 0;
            sregs.cs.selector = 0;
            vcpu.SetSregs(sregs);
            vcpu.SetRegs(new KvmRegs { rip = CodeAt, rflags = 0x2 });

            using var watchdog = new Watchdog(vcpu, TimeSpan.FromSeconds(10));

            KvmRunView exit = RunToExit(vcpu, KvmExitReason.Io);
            AssertIo(exit, KvmRunIo.Out, 1, 0x10, 1);
            Assert.Equal([0x42], exit.IoData.ToArray());

            exit = RunToExit(vcpu, KvmExitReason.Mmio);
            AssertMmio(exit, 0x8000, 1, isWrite: true);
            Assert.Equal([0x42], exit.MmioData.ToArray());

            exit = RunToExit(vcpu, KvmExitReason.Io);
            AssertIo(exit, KvmRunIo.In, 1, 0x11, 1);
            exit.IoData[0] = 0x99;

            exit = RunToExit(vcpu, KvmExitReason.Mmio);
            AssertMmio(exit, 0x8001, 1, isWrite: true);
            Assert.Equal([0x99], exit.MmioData.ToArray()); // the byte we answered the IN with

            exit = RunToExit(vcpu, KvmExitReason.Mmio);
            AssertMmio(exit, 0x8002, 2, isWrite: false);
            exit.MmioData[0] = 0xEF;
            exit.MmioData[1] = 0xBE;

            exit = RunToExit(vcpu, KvmExitReason.Io);
            AssertIo(exit, KvmRunIo.Out, 2, 0x12, 1);
            Assert.Equal([0xEF, 0xBE], exit.IoData.ToArray()); // the word we answered the MMIO read with

            // rep outsb: KVM may deliver the three bytes in one exit (count = 3) or several.
            var outs = new List<byte>();
            while (outs.Count < 3)
            {
                exit = RunToExit(vcpu, KvmExitReason.Io);
                AssertIo(exit, KvmRunIo.Out, 1, 0x13, exit.Io.count);
                Assert.Equal((int)exit.Io.count, exit.IoData.Length);
                outs.AddRange(exit.IoData.ToArray());
            }
            Assert.Equal("abc"u8.ToArray(), outs.ToArray());

            RunToExit(vcpu, KvmExitReason.Hlt);
            KvmRegs end = vcpu.GetRegs();
            Assert.Equal(0xBEEFul, end.rax & 0xFFFF);
            Assert.Equal((ulong)(CodeAt + code.Length), end.rip);
            Assert.Equal(0ul, end.rcx & 0xFFFF);
        }
        finally
        {
            vm.Dispose(); // the VM must let go of the RAM before it is freed
            NativeMemory.AlignedFree(ram);
        }
    }

    private static Kvm OpenKvm()
    {
        HostRequirements.RequireKvm("the KVM binding tests issue their ioctls against it");
        return Kvm.Open(HostRequirements.DevKvm);
    }

    private static KvmRunView RunToExit(KvmVcpu vcpu, KvmExitReason expected)
    {
        int r = vcpu.Run();
        Assert.True(r == 0, r == -4
            ? $"KVM_RUN was interrupted by the watchdog while waiting for {expected}: the guest ran away"
            : $"KVM_RUN failed with errno {-r} while waiting for {expected}");
        KvmRunView view = vcpu.RunView;
        Assert.True(view.ExitReason == expected,
            $"expected exit {expected}, got {view.ExitReason}" +
            (view.ExitReason == KvmExitReason.InternalError ? $" (suberror {view.Internal.suberror})" : ""));
        return view;
    }

    private static void AssertIo(KvmRunView exit, byte direction, byte size, ushort port, uint count)
    {
        ref KvmRunIo io = ref exit.Io;
        Assert.True(io.direction == direction && io.size == size && io.port == port && io.count == count,
            $"expected I/O exit dir {direction} size {size} port 0x{port:x} count {count}, got dir {io.direction} size {io.size} port 0x{io.port:x} count {io.count}");
    }

    private static void AssertMmio(KvmRunView exit, ulong address, uint length, bool isWrite)
    {
        ref KvmRunMmio mmio = ref exit.Mmio;
        Assert.True(mmio.phys_addr == address && mmio.len == length && mmio.is_write == (isWrite ? 1 : 0),
            $"expected MMIO exit at 0x{address:x} len {length} write {isWrite}, got 0x{mmio.phys_addr:x} len {mmio.len} write {mmio.is_write}");
    }

    /// <summary>Kicks the vCPU thread out of KVM_RUN if the guest has not finished in time; waits for its timer on dispose.</summary>
    private sealed class Watchdog : IDisposable
    {
        private readonly Timer _timer;
        private readonly KickTarget _target = VcpuKick.NewTarget();

        public Watchdog(KvmVcpu vcpu, TimeSpan timeout)
        {
            VcpuKick.Install();
            _target.Enter(); // the test's own thread runs the vCPU
            _timer = new Timer(_ =>
            {
                vcpu.ImmediateExit = true;
                _target.Kick();
            }, null, timeout, Timeout.InfiniteTimeSpan);
        }

        public void Dispose()
        {
            using var done = new ManualResetEvent(false);
            if (_timer.Dispose(done)) done.WaitOne();
            _target.Leave();
        }
    }
}
