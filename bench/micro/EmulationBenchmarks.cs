using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Csvmm.Emulation;
using Csvmm.Machine.Emulation;
using Csvmm.Memory;

namespace Csvmm.Bench.Micro;

/// <summary>
/// The userspace half of one emulated instruction (issue 9): decode with Iced in the vCPU's mode, look up the handler,
/// carry it out against guest RAM through the same adapter the vCPU loop uses (<see cref="EmulatedRam"/>). Not
/// included: the KVM exit and the KVM_GET/SET_REGS/SREGS round trip, which need /dev/kvm (bench/run.sh measures
/// those where it exists). QEMU has no counterpart: it stops at these emulation failures.
/// </summary>
[MemoryDiagnoser]
public class EmulationBenchmarks
{
    private const ulong Gdt = 0x1000, Stack = 0x8_0000;
    private static readonly byte[] Popcnt = [0xF3, 0x0F, 0xB8, 0xC3];        // popcnt eax, ebx
    private static readonly byte[] Movbe = [0x0F, 0x38, 0xF0, 0x06];         // movbe eax, [esi]
    private static readonly byte[] Iretd = [0xCF];                           // iretd (32-bit, same ring)

    private GuestMemory _memory = null!;
    private EmulatedRam _ram = null!;
    private readonly CpuState _cpu = new();
    private readonly Emulator _emulator = new();
    private readonly Host _host = new();

    private sealed class Host : IEmulationHost
    {
        public ulong ReadTsc() => 0;
        public ulong TscAux => 0;
        public ulong Xcr0 => 1;
    }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new GuestMemory();
        _memory.AddRegion(GuestAddress.Zero, 1 << 20, "ram");
        _ram = new EmulatedRam(_memory);
        _memory.Write(new GuestAddress(Gdt + 0x08), 0x00CF_9B00_0000_FFFFUL); // flat 32-bit code, accessed
        _memory.Write(new GuestAddress(Gdt + 0x10), 0x00CF_9300_0000_FFFFUL); // flat data, accessed
        _memory.Write(new GuestAddress(Stack), 0x0010_0000u);                  // iretd frame: EIP
        _memory.Write(new GuestAddress(Stack + 4), 0x08u);                     // CS
        _memory.Write(new GuestAddress(Stack + 8), 0x0000_0002u);              // EFLAGS
        _memory.Write(new GuestAddress(0x2000), 0x1122_3344u);
        _cpu.Cr0 = ControlBits.Cr0Pe;
        _cpu.Gdt = new DescriptorTable { Base = Gdt, Limit = 0x1F };
        _cpu.Cs = Segment.Flat(0x08, 0xB);
        _cpu.Ss = _cpu.Ds = _cpu.Es = _cpu.Fs = _cpu.Gs = Segment.Flat(0x10, 0x3);
        _cpu.Gpr[CpuState.Rbx] = 0xF0F0_F0F0;
        _cpu.Gpr[CpuState.Rsi] = 0x2000;
        if (Run(Popcnt).Status != EmulationStatus.Completed || Run(Movbe).Status != EmulationStatus.Completed ||
            Run(Iretd).Status != EmulationStatus.Completed)
            throw new InvalidOperationException("the benchmark's instructions did not emulate");
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    private EmulationOutcome Run(byte[] instruction)
    {
        _cpu.Rip = 0x10_0000;
        _cpu.Gpr[CpuState.Rsp] = Stack;
        return _emulator.Step(_cpu, _ram, _host, instruction);
    }

    [Benchmark(Description = "emulate popcnt r32 (32-bit)")]
    public EmulationOutcome PopcntStep() => Run(Popcnt);

    [Benchmark(Description = "emulate movbe r32, m32 (32-bit)")]
    public EmulationOutcome MovbeStep() => Run(Movbe);

    [Benchmark(Description = "emulate iretd with CS descriptor load")]
    public EmulationOutcome IretdStep() => Run(Iretd);
}
