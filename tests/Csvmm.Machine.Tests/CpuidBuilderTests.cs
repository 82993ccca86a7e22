using Csvmm.Kvm;

using Csvmm.Machine.X86;

namespace Csvmm.Machine.Tests;

/// <summary><see cref="CpuidBuilder"/> over a synthetic KVM_GET_SUPPORTED_CPUID table.</summary>
public sealed class CpuidBuilderTests
{
    private const uint HypervisorBit = 1u << 31, HttBit = 1u << 28;

    private static KvmCpuidEntry2 Leaf(uint function, uint index = 0, uint eax = 0, uint ebx = 0, uint ecx = 0, uint edx = 0) =>
        new() { function = function, index = index, eax = eax, ebx = ebx, ecx = ecx, edx = edx };

    /// <summary>A plausible host table: leaf 1 with CLFLUSH size and brand index, three cache leaves, 0xB, 0x80000008.</summary>
    private static KvmCpuidEntry2[] Supported() =>
    [
        Leaf(0, eax: 0xD, ebx: 0x756E_6547),
        Leaf(1, eax: 0x0005_0654, ebx: 0x00FF_0801, ecx: 0x7FFA_3203, edx: 0x0F8B_FBFF & ~HttBit),
        Leaf(4, 0, eax: 0xFC00_4121),   // L1d: type 1, level 1, self-initialising, host says 64 cores
        Leaf(4, 1, eax: 0xFC01_C163),   // L3: type 3, level 3, host says 8 threads share it
        Leaf(4, 2, eax: 0),             // terminator
        Leaf(0xB, 0, eax: 1, ebx: 2, ecx: 0x100, edx: 77),
        Leaf(0xB, 1, eax: 5, ebx: 32, ecx: 0x201, edx: 77),
        Leaf(0xB, 2, eax: 0, ebx: 0, ecx: 2, edx: 77),
        Leaf(0x8000_0000, eax: 0x8000_0008),
        Leaf(0x8000_0008, eax: 0x3030, ecx: 0x0000_703F),
    ];

    private static KvmCpuidEntry2 Find(KvmCpuidEntry2[] table, uint function, uint index = 0) =>
        Assert.Single(table, e => e.function == function && e.index == index);

    [Theory]
    [InlineData(0, 1)]
    [InlineData(0, 2)]
    [InlineData(1, 2)]
    [InlineData(2, 3)]
    [InlineData(6, 8)]
    public void Leaf1CarriesTheApicIdAndLogicalCount(int index, int count)
    {
        KvmCpuidEntry2 supported = Find(Supported(), 1);

        KvmCpuidEntry2 leaf = Find(CpuidBuilder.ForVcpu(Supported(), index, count), 1);

        Assert.Equal((uint)index, leaf.ebx >> 24);
        Assert.Equal((uint)count, (leaf.ebx >> 16) & 0xFF);
        Assert.Equal(supported.ebx & 0xFFFF, leaf.ebx & 0xFFFF);      // brand index and CLFLUSH size kept
        Assert.Equal(supported.ecx | HypervisorBit, leaf.ecx);         // only the hypervisor bit added
        Assert.Equal(count > 1, (leaf.edx & HttBit) != 0);
        Assert.Equal(supported.edx, leaf.edx & ~HttBit);
        Assert.Equal(supported.eax, leaf.eax);
    }

    [Theory]
    [InlineData(0, 1, 0u)]
    [InlineData(1, 2, 1u)]
    [InlineData(2, 3, 2u)]
    [InlineData(4, 5, 3u)]
    public void Leaf0BDescribesOneThreadPerCoreAndAllCoresInOnePackage(int index, int count, uint coreBits)
    {
        KvmCpuidEntry2[] table = CpuidBuilder.ForVcpu(Supported(), index, count);

        KvmCpuidEntry2 smt = Find(table, 0xB, 0), core = Find(table, 0xB, 1), end = Find(table, 0xB, 2);
        Assert.Equal((0u, 1u, 0x100u), (smt.eax, smt.ebx, smt.ecx));                       // level 0: SMT, 1 thread
        Assert.Equal((coreBits, (uint)count, 0x201u), (core.eax, core.ebx, core.ecx));     // level 1: cores
        Assert.Equal((0u, 0u, 2u), (end.eax, end.ebx, end.ecx));                            // level 2: invalid
        Assert.All(new[] { smt, core, end }, e => Assert.Equal((uint)index, e.edx));        // x2APIC id everywhere
    }

    [Fact]
    public void CacheLeavesCountThisVmsCoresAndShareOnlyTheL3()
    {
        KvmCpuidEntry2[] table = CpuidBuilder.ForVcpu(Supported(), 1, 4);

        KvmCpuidEntry2 l1 = Find(table, 4, 0), l3 = Find(table, 4, 1), terminator = Find(table, 4, 2);
        Assert.Equal(3u, l1.eax >> 26);                  // cores per package − 1
        Assert.Equal(0u, (l1.eax >> 14) & 0xFFF);        // L1 private to one thread
        Assert.Equal(0x121u, l1.eax & 0x3FFF);
        Assert.Equal(3u, l3.eax >> 26);
        Assert.Equal(3u, (l3.eax >> 14) & 0xFFF);        // L3 shared by all 4
        Assert.Equal(0x163u, l3.eax & 0x3FFF);
        Assert.Equal(0u, terminator.eax);                // the "no more caches" entry stays untouched
    }

    [Fact]
    public void AmdCoreCountLeafMatchesTheVcpuCount()
    {
        KvmCpuidEntry2 leaf = Find(CpuidBuilder.ForVcpu(Supported(), 0, 6), 0x8000_0008);

        Assert.Equal(5u, leaf.ecx & 0xFF);               // cores − 1
        Assert.Equal(3u, (leaf.ecx >> 12) & 0xF);        // APIC id size
        Assert.Equal(0x3030u, leaf.eax);                 // address sizes kept
        Assert.Equal(0u, leaf.ecx & 0xFFFF_0000);
    }

    [Fact]
    public void OtherLeavesAndTheOrderAreKept()
    {
        KvmCpuidEntry2[] supported = Supported();

        KvmCpuidEntry2[] table = CpuidBuilder.ForVcpu(supported, 0, 2);

        Assert.Equal(supported.Select(e => (e.function, e.index)), table.Select(e => (e.function, e.index)));
        Assert.Equal((supported[0].eax, supported[0].ebx), (table[0].eax, table[0].ebx));
        Assert.Equal(supported[8].eax, table[8].eax);
    }

    [Fact]
    public void EachVcpuGetsItsOwnApicId()
    {
        uint[] ids = Enumerable.Range(0, 4).Select(i => Find(CpuidBuilder.ForVcpu(Supported(), i, 4), 1).ebx >> 24).ToArray();

        Assert.Equal([0u, 1u, 2u, 3u], ids);
    }

    [Theory]
    [InlineData(-1, 2)]
    [InlineData(2, 2)]
    [InlineData(0, 0)]
    public void IndexOutsideTheVcpuCountIsRefused(int index, int count) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuidBuilder.ForVcpu(Supported(), index, count));

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 2)]
    [InlineData(5, 3)]
    [InlineData(8, 3)]
    [InlineData(255, 8)]
    public void BitsForIsCeilingLog2(int n, int bits) => Assert.Equal(bits, CpuidBuilder.BitsFor(n));
}
