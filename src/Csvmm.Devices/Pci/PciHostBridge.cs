namespace Csvmm.Devices.Pci;

/// <summary>
/// The Intel 440FX host bridge at 00:00.0 (8086:1237, class 0x060000, revision 2). Besides the standard header it
/// stores the PAM registers 0x59-0x5F (BIOS-area shadowing; SeaBIOS writes and reads them, csvmm keeps the BIOS
/// area as RAM so they have no effect) and SMRAM at 0x72 (D_OPEN/D_CLS/D_LCK/G_SMRAME writable, C_BASE_SEG = 010).
/// </summary>
public sealed class PciHostBridge : IPciFunction
{
    /// <summary>Intel's vendor ID.</summary>
    public const ushort VendorIntel = 0x8086;
    /// <summary>82441FX (i440FX) PMC device ID.</summary>
    public const ushort DeviceId = 0x1237;
    /// <summary>First PAM register (PAM0); PAM1-6 follow.</summary>
    public const int PamOffset = 0x59;
    /// <summary>Number of PAM registers.</summary>
    public const int PamCount = 7;
    /// <summary>SMRAM control register.</summary>
    public const int SmramOffset = 0x72;

    /// <summary>A host bridge with its power-on register values.</summary>
    public PciHostBridge()
    {
        Config = new PciConfigSpace(VendorIntel, DeviceId, classCode: 0x06_00_00, revision: 0x02);
        Config.SetWritableBits(PamOffset, 1, 0x30); // PAM0: 0xF0000-0xFFFFF only
        for (int i = 1; i < PamCount; i++) Config.SetWritableBits(PamOffset + i, 1, 0x33);
        Config.SetByte(SmramOffset, 0x02);
        Config.SetWritableBits(SmramOffset, 1, 0x78);
    }

    /// <summary>The bridge's configuration space.</summary>
    public PciConfigSpace Config { get; }

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) => Config.Write(offset, data);
}
