using System.Buffers.Binary;

namespace Csvmm.Acpi.Tables;

/// <summary>Address space of a <see cref="GenericAddress"/> (ACPI 6.0 table 5-25).</summary>
public enum AddressSpace : byte
{
    /// <summary>System memory.</summary>
    SystemMemory = 0,
    /// <summary>System I/O ports.</summary>
    SystemIo = 1,
}

/// <summary>Access size of a <see cref="GenericAddress"/> (ACPI 6.0 table 5-25).</summary>
public enum AccessSize : byte
{
    /// <summary>Undefined (legacy reasons): the OS picks the width from the register's bit width.</summary>
    Undefined = 0,
    /// <summary>Byte access.</summary>
    Byte = 1,
    /// <summary>Word (16-bit) access.</summary>
    Word = 2,
    /// <summary>Dword (32-bit) access.</summary>
    Dword = 3,
    /// <summary>Qword (64-bit) access.</summary>
    Qword = 4,
}

/// <summary>A Generic Address Structure (GAS, ACPI 6.0 section 5.2.3.2): 12 bytes naming a register.</summary>
/// <param name="Space">Address space the register lives in.</param>
/// <param name="BitWidth">Width of the register in bits.</param>
/// <param name="BitOffset">Offset of the register in the address, in bits.</param>
/// <param name="Access">Access size the OS must use.</param>
/// <param name="Address">Port number or physical address.</param>
public readonly record struct GenericAddress(AddressSpace Space, byte BitWidth, byte BitOffset, AccessSize Access, ulong Address)
{
    /// <summary>Size of the structure in bytes.</summary>
    public const int Size = 12;

    /// <summary>The all-zero structure: "register not present".</summary>
    public static GenericAddress None => default;

    /// <summary>An I/O-port register of <paramref name="byteLength"/> bytes at <paramref name="port"/>.</summary>
    public static GenericAddress Io(ushort port, int byteLength, AccessSize access) =>
        new(AddressSpace.SystemIo, checked((byte)(byteLength * 8)), 0, access, port);

    /// <summary>Writes the 12-byte structure at the start of <paramref name="destination"/>.</summary>
    public void WriteTo(Span<byte> destination)
    {
        destination[0] = (byte)Space;
        destination[1] = BitWidth;
        destination[2] = BitOffset;
        destination[3] = (byte)Access;
        BinaryPrimitives.WriteUInt64LittleEndian(destination[4..], Address);
    }
}
