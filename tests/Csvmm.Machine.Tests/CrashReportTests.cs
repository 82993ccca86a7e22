using Csvmm.Boot;
using Csvmm.Kvm;
using Csvmm.Memory;

namespace Csvmm.Machine.Tests;

/// <summary>
/// <see cref="CrashReport"/>: linear-to-physical translation through page tables built in a
/// <see cref="GuestMemory"/> (no KVM needed), and the report text.
/// </summary>
public sealed class CrashReportTests : IDisposable
{
    private const ulong Present = 1, Writable = 2, PageSize = 0x80, Pat4K = 0x80, PatLarge = 0x1000, NoExecute = 1UL << 63;
    private const ulong Pml4 = 0x1000, Pdpt = 0x2000, Pd = 0x3000, Pt = 0x4000;

    private readonly GuestMemory _memory = new();

    public CrashReportTests()
    {
        _memory.AddRegion(GuestAddress.Zero, 16UL << 20, "ram");
        // PML4[0] and PML4[256] (the higher half) share one PDPT.
        Entry(Pml4, 0, Pdpt | Present | Writable);
        Entry(Pml4, 256, Pdpt | Present | Writable);
        Entry(Pdpt, 0, Pd | Present | Writable);
        Entry(Pdpt, 1, 0x1_C000_0000 | Present | Writable | PageSize | NoExecute);  // 1 GiB page
        Entry(Pdpt, 2, 0x8000_0000 | Writable | PageSize);                          // 1 GiB, not present
        Entry(Pd, 0, Pt | Present | Writable);
        Entry(Pd, 1, 0x60_0000 | Present | Writable | PageSize);                    // 2 MiB page
        Entry(Pd, 2, 0x80_0000 | Present | PageSize | PatLarge);                    // 2 MiB page with PAT set
        Entry(Pd, 3, 0xA0_0000 | Writable | PageSize);                              // 2 MiB, not present
        Entry(Pt, 1, 0x7000 | Present);
        Entry(Pt, 5, 0x12_3000 | Present | Writable | Pat4K | NoExecute);           // 4 KiB page
        Entry(Pt, 6, 0x12_4000 | Writable);                                         // 4 KiB, not present
    }

    public void Dispose() => _memory.Dispose();

    private void Entry(ulong table, int index, ulong value) => _memory.Write(new GuestAddress(table + (ulong)index * 8), value);

    private static KvmSregs LongMode(ulong cr3) => new()
    {
        cr0 = BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging,
        cr3 = cr3,
        cr4 = BootControlRegisters.Cr4Pae,
        efer = BootControlRegisters.EferLme | BootControlRegisters.EferLma,
        cs = new KvmSegment { l = 1, present = 1, s = 1, type = 0xB },
    };

    [Theory]
    [InlineData(0x5ABCUL, 0x12_3ABCUL)]                      // 4 KiB page (PAT and NX bits don't leak)
    [InlineData(0x1000UL, 0x7000UL)]
    [InlineData(0x3F_FFFFUL, 0x7F_FFFFUL)]                   // 2 MiB page, last byte
    [InlineData(0x21_2345UL, 0x61_2345UL)]
    [InlineData(0x45_6789UL, 0x85_6789UL)]                   // 2 MiB page whose PAT bit (12) must not leak
    [InlineData(0x4000_0000UL, 0x1_C000_0000UL)]             // 1 GiB page
    [InlineData(0x7FFF_FFFFUL, 0x1_FFFF_FFFFUL)]
    [InlineData(0x5123_4567UL, 0x1_D123_4567UL)]
    [InlineData(0xFFFF_8000_0000_1234UL, 0x7234UL)]          // higher half: PML4[256]
    [InlineData(0xFFFF_8000_4000_0010UL, 0x1_C000_0010UL)]
    public void FourLevelTranslationFollowsEveryPageSize(ulong linear, ulong physical)
    {
        Assert.True(CrashReport.Translate(_memory, LongMode(Pml4), linear, out ulong pa));
        Assert.Equal(physical, pa);
    }

    [Theory]
    [InlineData(0x6000UL)]                       // PTE not present
    [InlineData(0x0000UL)]                       // PT[0] is empty
    [InlineData(0x60_0000UL)]                    // PDE not present (PS set)
    [InlineData(0x80_0000UL)]                    // PD[4] is empty
    [InlineData(0x8000_0000UL)]                  // PDPTE not present (PS set)
    [InlineData(0x0000_0080_0000_0000UL)]        // PML4[1] is empty
    [InlineData(0xFFFF_FF80_0000_0000UL)]        // PML4[511] is empty
    public void NotPresentAtAnyLevelFails(ulong linear) =>
        Assert.False(CrashReport.Translate(_memory, LongMode(Pml4), linear, out _));

    [Fact]
    public void TablesOutsideGuestMemoryFail()
    {
        Assert.False(CrashReport.Translate(_memory, LongMode(0x4000_0000), 0x7000, out _)); // CR3 beyond RAM
        Entry(Pd, 5, 0x7000_0000 | Present);                                                 // PT beyond RAM
        Assert.False(CrashReport.Translate(_memory, LongMode(Pml4), 0xA0_1000, out _));
    }

    [Theory]
    [InlineData(0x5ABCUL, true, 0x12_3ABCUL)]               // PDPTE 0 → PD → PT, 4 KiB page
    [InlineData(0x21_2345UL, true, 0x61_2345UL)]            // 2 MiB page
    [InlineData(0x45_6789UL, true, 0x85_6789UL)]            // 2 MiB page with PAT set
    [InlineData(0x6000UL, false, 0UL)]                      // PTE not present
    [InlineData(0x4000_0000UL, false, 0UL)]                 // PDPTE 1 not present
    public void PaeTranslationWalksThreeLevels(ulong linear, bool mapped, ulong physical)
    {
        const ulong PaePdpt = 0x5020;                       // CR3 needs only 32-byte alignment under PAE
        Entry(PaePdpt, 0, Pd | Present);
        var sregs = new KvmSregs { cr0 = BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging, cr3 = PaePdpt, cr4 = BootControlRegisters.Cr4Pae };

        Assert.Equal(mapped, CrashReport.Translate(_memory, sregs, linear, out ulong pa));
        if (mapped) Assert.Equal(physical, pa);
    }

    [Theory]
    [InlineData(0x5ABCUL, false, true, 0x12_3ABCUL)]       // PDE 0 → PT, 4 KiB page
    [InlineData(0x40_1234UL, true, true, 0x80_1234UL)]     // 4 MiB page with CR4.PSE
    [InlineData(0x40_1234UL, false, false, 0UL)]           // without PSE, PS is ignored: PT at 8 MiB is empty
    [InlineData(0x6000UL, true, false, 0UL)]
    public void LegacyTwoLevelTranslationHonoursPse(ulong linear, bool pse, bool mapped, ulong physical)
    {
        const ulong Pd32 = 0x6000, Pt32 = 0x8000;
        _memory.Write(new GuestAddress(Pd32), (uint)(Pt32 | Present));
        _memory.Write(new GuestAddress(Pd32 + 4), (uint)(0x80_0000 | Present | PageSize));
        _memory.Write(new GuestAddress(Pt32 + 5 * 4), (uint)(0x12_3000 | Present));
        var sregs = new KvmSregs { cr0 = BootControlRegisters.Cr0ProtectionEnable | BootControlRegisters.Cr0Paging, cr3 = Pd32, cr4 = pse ? 0x10UL : 0 };

        Assert.Equal(mapped, CrashReport.Translate(_memory, sregs, linear, out ulong pa));
        if (mapped) Assert.Equal(physical, pa);
    }

    [Fact]
    public void WithoutPagingLinearIsPhysicalTruncatedTo32Bits()
    {
        var sregs = new KvmSregs { cr0 = BootControlRegisters.Cr0ProtectionEnable };

        Assert.True(CrashReport.Translate(_memory, sregs, 0x1_2345_6789, out ulong pa));
        Assert.Equal(0x2345_6789UL, pa);
    }

    [Fact]
    public void ReadLinearStopsAtTheFirstUnmappedPage()
    {
        _memory.Write(new GuestAddress(0x12_3FFE), (ushort)0xBEEF);
        byte[] buffer = new byte[8];

        int got = CrashReport.ReadLinear(_memory, LongMode(Pml4), 0x5FFE, buffer);

        Assert.Equal(2, got);                    // 0x6000 is not present
        Assert.Equal(new byte[] { 0xEF, 0xBE }, buffer[..2]);
    }

    [Fact]
    public void ReportShowsRegistersAndDisassemblesAtRipThroughThePageTables()
    {
        // ud2; hlt at linear 0x5100 → physical 0x123100.
        _memory.WriteBytes(new GuestAddress(0x12_3100), [0x0F, 0x0B, 0xF4]);
        var regs = new KvmRegs { rip = 0x5100, rax = 0x1234_5678_9ABC_DEF0, rflags = 0x46 };

        string report = CrashReport.Build("guest triple fault (KVM_EXIT_SHUTDOWN)", 1, regs, LongMode(Pml4), _memory);

        Assert.StartsWith("csvmm: guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU 1", report, StringComparison.Ordinal);
        Assert.Contains("64-bit long mode", report, StringComparison.Ordinal);
        Assert.Contains("rip=0000000000005100", report, StringComparison.Ordinal);
        Assert.Contains("rax=123456789abcdef0", report, StringComparison.Ordinal);
        Assert.Matches(@"=> 5100: 0f0b\s+ud2", report);
        Assert.Matches(@"5102: f4\s+hlt", report);
    }

    [Fact]
    public void ReportInRealModeUsesCsBaseAnd16BitDecoding()
    {
        _memory.WriteBytes(new GuestAddress(0xF_0100), [0xB8, 0x34, 0x12, 0xF4]); // mov ax,1234h; hlt
        var sregs = new KvmSregs { cs = new KvmSegment { @base = 0xF_0000, selector = 0xF000, limit = 0xFFFF, present = 1, s = 1, type = 0xB } };

        string report = CrashReport.Build("test", 0, new KvmRegs { rip = 0x100 }, sregs, _memory);

        Assert.Contains("real mode", report, StringComparison.Ordinal);
        Assert.Matches(@"=> 100: b83412\s+mov\s+ax,1234h", report);
    }

    [Fact]
    public void ReportFallsBackToKvmsInstructionBytesWhenRipIsUnreadable()
    {
        string report = CrashReport.Build("emulation failure", 0, new KvmRegs { rip = 0x6000 }, LongMode(Pml4), _memory,
            [0x0F, 0xC7, 0x0E]); // cmpxchg8b [rsi]: 0x6000 is not mapped

        Assert.Matches(@"=> 6000: 0fc70e\s+cmpxchg8b \[rsi\]", report);
    }
}
