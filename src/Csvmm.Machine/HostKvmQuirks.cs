namespace Csvmm.Machine;

/// <summary>What the host's KVM does differently from a hardware one, where csvmm must work around it.</summary>
public static class HostKvmQuirks
{
    private static readonly Lazy<bool> Pvm = new(() => Directory.Exists("/sys/module/kvm_pvm"));

    /// <summary>
    /// The host KVM is kvm_pvm (an emulating KVM: guest kernel code runs under its instruction emulator outside 64-bit
    /// paging mode). Its dirty log misses the writes it emulates there: measured on this project's CI host, a real-mode
    /// guest's stores were in RAM but KVM_GET_DIRTY_LOG returned no page, while the same stores in long mode were logged.
    /// </summary>
    public static bool DirtyLogMissesEmulatedModes => Pvm.Value;
}
