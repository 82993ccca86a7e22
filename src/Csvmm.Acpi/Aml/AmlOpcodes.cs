namespace Csvmm.Acpi.Aml;

/// <summary>AML opcodes and prefixes csvmm emits (ACPI 6.0 section 20.3, "AML Byte Stream Byte Values").</summary>
internal static class AmlOpcodes
{
    public const byte Zero = 0x00;
    public const byte One = 0x01;
    public const byte Name = 0x08;
    public const byte BytePrefix = 0x0A;
    public const byte WordPrefix = 0x0B;
    public const byte DWordPrefix = 0x0C;
    public const byte StringPrefix = 0x0D;
    public const byte QWordPrefix = 0x0E;
    public const byte Scope = 0x10;
    public const byte Buffer = 0x11;
    public const byte Package = 0x12;
    public const byte VarPackage = 0x13;
    public const byte Method = 0x14;
    public const byte DualNamePrefix = 0x2E;
    public const byte MultiNamePrefix = 0x2F;
    public const byte ExtOpPrefix = 0x5B;
    public const byte RootChar = 0x5C;   // '\'
    public const byte ParentPrefix = 0x5E; // '^'
    public const byte NullName = 0x00;
    public const byte Return = 0xA4;

    /// <summary>Second byte of DeviceOp (after <see cref="ExtOpPrefix"/>).</summary>
    public const byte Device = 0x82;
}
