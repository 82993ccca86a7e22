using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The Fixed ACPI Description Table ("FACP", ACPI 6.3 section 5.2.9), revision 6.3, 276 bytes: the layout Linux
/// 6.1's ACPICA knows in full, so it neither truncates nor warns. It points at the FACS and DSDT and names the
/// fixed-hardware registers (PM1a event/control blocks, PM timer) both as legacy port fields and as X_ GASes with
/// matching widths, and the reset register. There are no GPE blocks and no SMI command port: the platform is always
/// in ACPI mode (SCI_EN reads as 1).
/// </summary>
public static class Fadt
{
    /// <summary>Table length for revision 6.</summary>
    public const int Length = 276;
    /// <summary>Major revision.</summary>
    public const byte Revision = 6;
    /// <summary>Minor revision (ACPI 6.3).</summary>
    public const byte MinorRevision = 3;

    /// <summary>FADT flags (ACPI 6.3 table 5-34).</summary>
    [Flags]
    public enum FeatureFlags : uint
    {
        /// <summary>WBINVD works.</summary>
        Wbinvd = 1 << 0,
        /// <summary>C1 is supported on all processors.</summary>
        ProcC1 = 1 << 2,
        /// <summary>The power button is a control-method device, or there is none (csvmm: none).</summary>
        PwrButton = 1 << 4,
        /// <summary>The sleep button is a control-method device, or there is none (csvmm: none).</summary>
        SlpButton = 1 << 5,
        /// <summary>The reset register is supported.</summary>
        ResetRegSup = 1 << 10,
    }

    /// <summary>IA-PC boot architecture flags (ACPI 6.3 table 5-35).</summary>
    [Flags]
    public enum BootArchFlags : ushort
    {
        /// <summary>An 8042 keyboard controller is present.</summary>
        I8042 = 1 << 1,
        /// <summary>No VGA: the OS must not probe the legacy VGA ranges.</summary>
        VgaNotPresent = 1 << 2,
    }

    /// <summary>The flags csvmm sets.</summary>
    public const FeatureFlags Flags =
        FeatureFlags.Wbinvd | FeatureFlags.ProcC1 | FeatureFlags.PwrButton | FeatureFlags.SlpButton | FeatureFlags.ResetRegSup;

    /// <summary>The boot architecture flags csvmm sets.</summary>
    public const BootArchFlags BootArch = BootArchFlags.I8042 | BootArchFlags.VgaNotPresent;

    // Field offsets (ACPI 6.3 table 5-33).
    internal const int FirmwareCtrl = 36;
    internal const int Dsdt = 40;
    internal const int SciInt = 46;
    internal const int Pm1aEvtBlk = 56;
    internal const int Pm1aCntBlk = 64;
    internal const int PmTmrBlk = 76;
    internal const int Pm1EvtLen = 88;
    internal const int Pm1CntLen = 89;
    internal const int PmTmrLen = 91;
    internal const int IapcBootArch = 109;
    internal const int FlagsOffset = 112;
    internal const int ResetReg = 116;
    internal const int ResetValue = 128;
    internal const int MinorVersion = 131;
    internal const int XFirmwareCtrl = 132;
    internal const int XDsdt = 140;
    internal const int XPm1aEvtBlk = 148;
    internal const int XPm1aCntBlk = 172;
    internal const int XPmTmrBlk = 208;
    internal const int HypervisorVendorIdentity = 268;

    private const int Pm1EvtBytes = 4;
    private const int Pm1CntBytes = 2;
    private const int PmTmrBytes = 4;

    /// <summary>The FADT for <paramref name="config"/>, pointing at the FACS and DSDT at the given addresses.</summary>
    public static byte[] Build(AcpiConfig config, GuestAddress facs, GuestAddress dsdt)
    {
        var t = SdtHeader.Create("FACP", Revision, Length);
        var s = t.AsSpan();

        // The FACS pointer goes in exactly one of FIRMWARE_CTRL / X_FIRMWARE_CTRL (the spec wants the other zero).
        if (facs.Value <= uint.MaxValue) U32(s, FirmwareCtrl, (uint)facs.Value);
        else U64(s, XFirmwareCtrl, facs.Value);
        // DSDT: both fields when it is below 4 GiB; they agree, so ACPICA does not complain about a mismatch.
        if (dsdt.Value <= uint.MaxValue) U32(s, Dsdt, (uint)dsdt.Value);
        U64(s, XDsdt, dsdt.Value);

        U16(s, SciInt, config.SciIrq);
        // SMI_CMD, ACPI_ENABLE, ACPI_DISABLE: 0, i.e. always in ACPI mode.
        U32(s, Pm1aEvtBlk, config.Pm1aEventBlock);
        U32(s, Pm1aCntBlk, config.Pm1aControlBlock);
        U32(s, PmTmrBlk, config.PmTimerBlock);
        s[Pm1EvtLen] = Pm1EvtBytes;
        s[Pm1CntLen] = Pm1CntBytes;
        s[PmTmrLen] = PmTmrBytes;
        U16(s, IapcBootArch, (ushort)BootArch);
        U32(s, FlagsOffset, (uint)Flags);
        GenericAddress.Io(config.ResetPort, 1, AccessSize.Byte).WriteTo(s[ResetReg..]);
        s[ResetValue] = config.ResetValue;
        s[MinorVersion] = MinorRevision;
        GenericAddress.Io(config.Pm1aEventBlock, Pm1EvtBytes, AccessSize.Word).WriteTo(s[XPm1aEvtBlk..]);
        GenericAddress.Io(config.Pm1aControlBlock, Pm1CntBytes, AccessSize.Word).WriteTo(s[XPm1aCntBlk..]);
        GenericAddress.Io(config.PmTimerBlock, PmTmrBytes, AccessSize.Dword).WriteTo(s[XPmTmrBlk..]);
        SdtHeader.Ascii(s.Slice(HypervisorVendorIdentity, AcpiIds.HypervisorVendor.Length), AcpiIds.HypervisorVendor);

        SdtHeader.Seal(t);
        return t;
    }

    private static void U16(Span<byte> s, int offset, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(s[offset..], v);
    private static void U32(Span<byte> s, int offset, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], v);
    private static void U64(Span<byte> s, int offset, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(s[offset..], v);
}
