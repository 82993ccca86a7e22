using System.Buffers.Binary;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The Multiple APIC Description Table ("APIC", ACPI 6.3 section 5.2.12), revision 5: the Local APIC address with
/// PCAT_COMPAT (dual 8259s present), one enabled Processor Local APIC per vCPU (ACPI processor UID = APIC ID =
/// vCPU index), the I/O APIC (GSI base 0), the two ISA interrupt source overrides a PC needs (IRQ 0 -> GSI 2 for the
/// PIT; the SCI as level-triggered, active high, as QEMU does) and LINT1 as NMI on every processor.
/// </summary>
public static class Madt
{
    /// <summary>Table revision (ACPI 6.3).</summary>
    public const byte Revision = 5;

    /// <summary>MADT flag: the system also has a PC-AT-compatible dual 8259 setup.</summary>
    public const uint PcatCompat = 1;

    /// <summary>Interrupt structure types (ACPI 6.3 table 5-45).</summary>
    public enum EntryType : byte
    {
        /// <summary>Processor Local APIC, 8 bytes.</summary>
        LocalApic = 0,
        /// <summary>I/O APIC, 12 bytes.</summary>
        IoApic = 1,
        /// <summary>Interrupt Source Override, 10 bytes.</summary>
        InterruptSourceOverride = 2,
        /// <summary>Local APIC NMI, 6 bytes.</summary>
        LocalApicNmi = 4,
    }

    /// <summary>MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3 (ACPI 6.3 table 5-50).</summary>
    [Flags]
    public enum IntiFlags : ushort
    {
        /// <summary>Conforms to the bus's defaults (ISA: edge, active high).</summary>
        Conforming = 0,
        /// <summary>Active high.</summary>
        ActiveHigh = 0x1,
        /// <summary>Active low.</summary>
        ActiveLow = 0x3,
        /// <summary>Edge-triggered.</summary>
        Edge = 0x1 << 2,
        /// <summary>Level-triggered.</summary>
        Level = 0x3 << 2,
    }

    private const int LocalApicLength = 8;
    private const int IoApicLength = 12;
    private const int OverrideLength = 10;
    private const int NmiLength = 6;
    private const uint LocalApicEnabled = 1;

    /// <summary>The MADT for <paramref name="config"/>.</summary>
    public static byte[] Build(AcpiConfig config)
    {
        int length = SdtHeader.Size + 8 + config.CpuCount * LocalApicLength + IoApicLength + 2 * OverrideLength + NmiLength;
        var t = SdtHeader.Create("APIC", Revision, length);
        var s = t.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(s[36..], (uint)config.LocalApicAddress.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(s[40..], PcatCompat);
        int at = 44;

        for (int cpu = 0; cpu < config.CpuCount; cpu++)
        {
            var e = Entry(s, ref at, EntryType.LocalApic, LocalApicLength);
            e[2] = (byte)cpu;  // ACPI processor UID
            e[3] = (byte)cpu;  // APIC ID
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], LocalApicEnabled);
        }

        var io = Entry(s, ref at, EntryType.IoApic, IoApicLength);
        io[2] = config.IoApicId;
        BinaryPrimitives.WriteUInt32LittleEndian(io[4..], (uint)config.IoApicAddress.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(io[8..], 0); // GSI base

        // The PIT's IRQ 0 is wired to I/O APIC pin 2 (pin 0 is the 8259's ExtINT).
        Override(s, ref at, 0, 2, IntiFlags.Conforming);
        Override(s, ref at, config.SciIrq, config.SciIrq, IntiFlags.ActiveHigh | IntiFlags.Level);

        var nmi = Entry(s, ref at, EntryType.LocalApicNmi, NmiLength);
        nmi[2] = 0xFF;  // all processors
        BinaryPrimitives.WriteUInt16LittleEndian(nmi[3..], (ushort)IntiFlags.Conforming);
        nmi[5] = 1;     // LINT1

        SdtHeader.Seal(t);
        return t;
    }

    private static void Override(Span<byte> s, ref int at, byte irq, uint gsi, IntiFlags flags)
    {
        var e = Entry(s, ref at, EntryType.InterruptSourceOverride, OverrideLength);
        e[2] = 0;  // bus: ISA
        e[3] = irq;
        BinaryPrimitives.WriteUInt32LittleEndian(e[4..], gsi);
        BinaryPrimitives.WriteUInt16LittleEndian(e[8..], (ushort)flags);
    }

    private static Span<byte> Entry(Span<byte> table, ref int at, EntryType type, int length)
    {
        var e = table.Slice(at, length);
        e[0] = (byte)type;
        e[1] = (byte)length;
        at += length;
        return e;
    }
}
