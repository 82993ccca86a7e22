namespace Csvmm.Virtio;

/// <summary>Device status bits (virtio 1.2 §2.1).</summary>
public static class VirtioStatus
{
    public const byte Acknowledge = 1, Driver = 2, DriverOk = 4, FeaturesOk = 8, DeviceNeedsReset = 0x40, Failed = 0x80;
}

/// <summary>Device-independent feature bits (virtio 1.2 §6).</summary>
public static class VirtioFeatures
{
    public const int IndirectDescBit = 28, EventIdxBit = 29, Version1Bit = 32, AccessPlatformBit = 33, RingPackedBit = 34;

    public const ulong IndirectDesc = 1UL << IndirectDescBit;
    public const ulong EventIdx = 1UL << EventIdxBit;
    public const ulong Version1 = 1UL << Version1Bit;
}

/// <summary>Virtio device IDs (virtio 1.2 §5).</summary>
public static class VirtioDeviceType
{
    public const ushort Net = 1, Block = 2, Console = 3, Entropy = 4;
}
