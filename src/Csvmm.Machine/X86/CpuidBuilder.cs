using Csvmm.Kvm;

namespace Csvmm.Machine.X86;

/// <summary>
/// Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID: APIC ids, topology (one core per vCPU, one package),
/// the hypervisor bit. Pure: the table tests feed it synthetic "supported" tables.
/// </summary>
public static class CpuidBuilder
{
    public static KvmCpuidEntry2[] ForVcpu(ReadOnlySpan<KvmCpuidEntry2> supported, int vcpuIndex, int vcpuCount)
    {
        if (vcpuCount < 1 || vcpuIndex < 0 || vcpuIndex >= vcpuCount) throw new ArgumentOutOfRangeException(nameof(vcpuIndex));
        uint apicId = (uint)vcpuIndex;
        uint coreBits = (uint)BitsFor(vcpuCount);
        var result = new KvmCpuidEntry2[supported.Length];
        for (int i = 0; i < supported.Length; i++)
        {
            var e = supported[i];
            switch (e.function)
            {
                case 1:
                    e.ebx = (e.ebx & 0x0000FFFF) | ((uint)Math.Min(vcpuCount, 255) << 16) | (apicId << 24);
                    e.ecx |= 1u << 31;                       // running under a hypervisor
                    if (vcpuCount > 1) e.edx |= 1u << 28;    // HTT: EBX[23:16] is meaningful
                    break;
                case 4:
                    // Deterministic cache parameters: cores per package in EAX[31:26]; L3 (level 3) shared by all.
                    if ((e.eax & 0x1F) != 0)
                    {
                        uint level = (e.eax >> 5) & 7;
                        uint sharing = level >= 3 ? (uint)(vcpuCount - 1) : 0;
                        e.eax = (e.eax & 0x3FFF) | ((sharing & 0xFFF) << 14) | (((uint)(vcpuCount - 1) & 0x3F) << 26);
                    }
                    break;
                case 0xB:
                case 0x1F:
                    switch (e.index)
                    {
                        case 0: e.eax = 0; e.ebx = 1; e.ecx = (1u << 8) | 0; break;                         // SMT: 1 thread
                        case 1: e.eax = coreBits; e.ebx = (uint)vcpuCount; e.ecx = (2u << 8) | 1; break;    // cores
                        default: e.eax = 0; e.ebx = 0; e.ecx = e.index & 0xFF; break;                        // invalid level
                    }
                    e.edx = apicId;
                    break;
                case 0x8000_001E:
                    // AMD topology extensions: extended APIC id, core id (one thread per core), node 0.
                    e.eax = apicId;
                    e.ebx = apicId & 0xFF;
                    e.ecx = 0;
                    break;
                case 0x8000_0008:
                    // AMD: number of physical cores - 1 in ECX[7:0], APIC id size in ECX[15:12].
                    e.ecx = (e.ecx & ~0xF0FFu) | (coreBits << 12) | (uint)(vcpuCount - 1);
                    break;
            }
            result[i] = e;
        }
        return result;
    }

    /// <summary>Bits needed to number <paramref name="n"/> items (ceil(log2 n)).</summary>
    public static int BitsFor(int n)
    {
        int bits = 0;
        while ((1 << bits) < n) bits++;
        return bits;
    }
}
