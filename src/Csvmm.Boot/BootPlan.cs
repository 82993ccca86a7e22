using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>How the boot vCPU starts.</summary>
public enum EntryMode
{
    /// <summary>
    /// Linux 64-bit boot protocol: long mode with the identity map of <see cref="BootPageTables"/>, the GDT of
    /// <see cref="BootGdt"/> (CS = <see cref="BootGdt.Code64Selector"/>, data = <see cref="BootGdt.DataSelector"/>),
    /// interrupts off, RIP = <see cref="BootPlan.Entry"/>, RSI = <see cref="BootPlan.BootParameters"/> (the zero page).
    /// </summary>
    Linux64,
    /// <summary>
    /// PVH: 32-bit protected mode, paging off, CS = <see cref="BootGdt.Code32Selector"/> (flat 4 GiB code), data
    /// segments = <see cref="BootGdt.DataSelector"/>, interrupts off, EIP = <see cref="BootPlan.Entry"/>,
    /// EBX = <see cref="BootPlan.BootParameters"/> (hvm_start_info).
    /// </summary>
    Pvh32,
    /// <summary>
    /// Firmware: the CPU's reset state (real mode, CS selector 0xF000 with base 0xFFFF0000, IP 0xFFF0), so the first
    /// instruction is fetched from <see cref="BootPlan.Entry"/> = 0xFFFFFFF0 in the firmware ROM.
    /// </summary>
    RealModeReset,
}

/// <summary>
/// What a loader placed in guest memory and how the boot vCPU must be started to run it.
/// </summary>
/// <param name="Mode">The CPU mode to enter in.</param>
/// <param name="Entry">Guest-physical address of the first instruction.</param>
/// <param name="BootParameters">
/// The address for RSI (<see cref="EntryMode.Linux64"/>: the zero page) or EBX (<see cref="EntryMode.Pvh32"/>:
/// hvm_start_info); zero for <see cref="EntryMode.RealModeReset"/>.
/// </param>
public sealed record BootPlan(EntryMode Mode, GuestAddress Entry, GuestAddress BootParameters)
{
    /// <summary>First byte the kernel (or firmware) occupies.</summary>
    public GuestAddress ImageStart { get; init; }
    /// <summary>Last byte + 1 the kernel may use before it reads the memory map (for a bzImage: runtime start + init_size).</summary>
    public GuestAddress ImageEnd { get; init; }
    /// <summary>Where the initrd was placed, or zero when there is none.</summary>
    public GuestAddress InitrdStart { get; init; }
    /// <summary>Initrd length in bytes, or zero when there is none.</summary>
    public ulong InitrdSize { get; init; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Mode} entry {Entry} params {BootParameters} image [{ImageStart}, {ImageEnd})" +
        (InitrdSize != 0 ? $" initrd [{InitrdStart}, +0x{InitrdSize:x})" : "");
}
