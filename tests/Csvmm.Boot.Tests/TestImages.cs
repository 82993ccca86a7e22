using System.Buffers.Binary;
using System.Text;
using Csvmm.Memory;

namespace Csvmm.Boot.Tests;

/// <summary>
/// Synthesized bzImages: a boot sector + setup sectors holding a setup header with the field offsets of
/// Documentation/arch/x86/boot.rst (written here as literals, independent of the loader's constants), followed by
/// a patterned "protected-mode kernel".
/// </summary>
internal static class FakeBzImage
{
    public const int DefaultSetupSects = 4;
    public const int DefaultPayload = 0x4000;
    public const uint DefaultInitSize = 0x80_0000;      // 8 MiB
    public const ulong DefaultPrefAddress = 0x100_0000; // 16 MiB (LOAD_PHYSICAL_ADDR)
    public const uint DefaultCmdlineSize = 2047;

    public static byte[] Build(int setupSects = DefaultSetupSects, int payload = DefaultPayload)
    {
        int setupSize = ((setupSects == 0 ? 4 : setupSects) + 1) * 512;
        var image = new byte[setupSize + payload];
        image.AsSpan(0, setupSize).Fill(0xCC); // real-mode code: must not leak into the zero page
        image.AsSpan(0x1F1, 0x26C - 0x1F1).Clear();
        image[0x1EF] = 0xFF;                  // sentinel, outside the header
        image[0x1F1] = (byte)setupSects;
        U32(image, 0x1F4, (uint)(payload / 16));
        U16(image, 0x1FA, 0xFFFF);            // vid_mode
        U16(image, 0x1FE, 0xAA55);
        image[0x200] = 0xEB;                  // jmp rel8 ...
        image[0x201] = 0x6A;                  // ... header ends at 0x26C
        U32(image, 0x202, 0x5372_6448);       // "HdrS"
        U16(image, 0x206, 0x020F);            // protocol 2.15
        image[0x211] = 0x01;                  // LOADED_HIGH
        U32(image, 0x214, 0x10_0000);         // code32_start
        U32(image, 0x22C, 0x7FFF_FFFF);       // initrd_addr_max
        U32(image, 0x230, 0x20_0000);         // kernel_alignment
        image[0x234] = 1;                     // relocatable
        U16(image, 0x236, 0x0003);            // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
        U32(image, 0x238, DefaultCmdlineSize);
        U64(image, 0x258, DefaultPrefAddress);
        U32(image, 0x260, DefaultInitSize);
        for (int i = 0; i < payload; i++)
            image[setupSize + i] = PayloadByte(i);
        return image;
    }

    public static byte PayloadByte(int i) => (byte)(i * 7 + 3);

    public static void U16(byte[] b, int offset, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(offset), v);
    public static void U32(byte[] b, int offset, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(offset), v);
    public static void U64(byte[] b, int offset, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(offset), v);
}

/// <summary>A tiny ELF64 x86-64 executable writer: program headers for PT_LOAD segments and PT_NOTE segments.</summary>
internal sealed class ElfBuilder
{
    public const int PhdrTableOffset = 64;
    public const int PhdrSize = 56;

    private readonly List<(uint Type, ulong Paddr, byte[] Data, ulong MemSize)> _segments = [];

    /// <summary>Adds a PT_LOAD of <paramref name="data"/> at <paramref name="paddr"/> occupying <paramref name="memSize"/> bytes.</summary>
    public ElfBuilder Load(ulong paddr, byte[] data, ulong memSize)
    {
        _segments.Add((1, paddr, data, memSize));
        return this;
    }

    /// <summary>Adds a PT_NOTE segment holding the given notes.</summary>
    public ElfBuilder Notes(params (string Name, uint Type, byte[] Desc)[] notes)
    {
        var bytes = new List<byte>();
        foreach (var (name, type, desc) in notes)
        {
            byte[] nameBytes = Encoding.ASCII.GetBytes(name + "\0");
            bytes.AddRange(BitConverter.GetBytes((uint)nameBytes.Length));
            bytes.AddRange(BitConverter.GetBytes((uint)desc.Length));
            bytes.AddRange(BitConverter.GetBytes(type));
            bytes.AddRange(Pad4(nameBytes));
            bytes.AddRange(Pad4(desc));
        }
        _segments.Add((4, 0, bytes.ToArray(), (ulong)bytes.Count));
        return this;
    }

    /// <summary>The standard PVH note: "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 8-byte entry (as Linux's _ASM_PTR emits it).</summary>
    public static (string, uint, byte[]) PvhNote(ulong entry, int size = 8) =>
        ("Xen", 18, BitConverter.GetBytes(entry).AsSpan(0, size).ToArray());

    public byte[] Build()
    {
        int dataStart = PhdrTableOffset + _segments.Count * PhdrSize;
        int total = dataStart + _segments.Sum(s => s.Data.Length);
        var image = new byte[total];
        "\x7f"u8.CopyTo(image);
        "ELF"u8.CopyTo(image.AsSpan(1));
        image[4] = 2;  // ELFCLASS64
        image[5] = 1;  // ELFDATA2LSB
        image[6] = 1;  // EV_CURRENT
        FakeBzImage.U16(image, 16, 2);      // ET_EXEC
        FakeBzImage.U16(image, 18, 62);     // EM_X86_64
        FakeBzImage.U32(image, 20, 1);
        FakeBzImage.U64(image, 24, 0xFFFF_FFFF_8100_0000); // e_entry (virtual, unused by PVH)
        FakeBzImage.U64(image, 32, PhdrTableOffset);
        FakeBzImage.U16(image, 52, 64);
        FakeBzImage.U16(image, 54, PhdrSize);
        FakeBzImage.U16(image, 56, (ushort)_segments.Count);

        int offset = dataStart;
        for (int i = 0; i < _segments.Count; i++)
        {
            var (type, paddr, data, memSize) = _segments[i];
            int ph = PhdrTableOffset + i * PhdrSize;
            FakeBzImage.U32(image, ph, type);
            FakeBzImage.U32(image, ph + 4, 5);                 // R+X
            FakeBzImage.U64(image, ph + 8, (ulong)offset);     // p_offset
            FakeBzImage.U64(image, ph + 16, paddr | 0xFFFF_FFFF_8000_0000); // p_vaddr
            FakeBzImage.U64(image, ph + 24, paddr);            // p_paddr
            FakeBzImage.U64(image, ph + 32, (ulong)data.Length);
            FakeBzImage.U64(image, ph + 40, memSize);
            FakeBzImage.U64(image, ph + 48, 0x1000);
            data.CopyTo(image, offset);
            offset += data.Length;
        }
        return image;
    }

    /// <summary>Offset of field <paramref name="fieldOffset"/> of program header <paramref name="index"/>.</summary>
    public static int Phdr(int index, int fieldOffset) => PhdrTableOffset + index * PhdrSize + fieldOffset;

    private static byte[] Pad4(byte[] b) => b.Concat(new byte[(4 - b.Length % 4) % 4]).ToArray();
}

/// <summary>Guest memory for tests: RAM from 0, split around the MMIO hole like the machine does.</summary>
internal static class TestMemory
{
    public const ulong MiB = 1UL << 20;

    public static GuestMemory Create(ulong ramBytes)
    {
        var memory = new GuestMemory();
        ulong low = Math.Min(ramBytes, 0xC000_0000);
        memory.AddRegion(GuestAddress.Zero, low, "ram-low");
        if (ramBytes > low)
            memory.AddRegion(new GuestAddress(0x1_0000_0000), ramBytes - low, "ram-high");
        return memory;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++) b[i] = (byte)(i * 13 + seed);
        return b;
    }
}
