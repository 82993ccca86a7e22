using System.Buffers.Binary;
using Csvmm.Devices.FwCfg;
using Csvmm.Devices.State;
using Csvmm.Machine.X86;
using Csvmm.Memory;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// QEMU's fw_cfg as a hostile guest drives it: selector writes, data-port reads, odd-width accesses anywhere in the
/// 12 ports, and DMA transfers whose <c>FWCfgDmaAccess</c> structures (and their target addresses) come from the input,
/// through the machine's own guest-memory adapter (<see cref="GuestMemoryDma"/>).
/// </summary>
/// <remarks>
/// <para>Machine: 1 MiB of RAM at 0 and a 64 KiB ROM right after it at 0x10_0000. Content: legacy items 0x0f, 0x03 and
/// the arch-local 0x8003, and files (directory order) bootorder (15 bytes), etc/big (70,000 bytes), etc/empty (0),
/// etc/sercon-port (2), etc/zzz (1), at keys 0x20-0x24. A fresh device each run; RAM zeroed. Reads past the input's
/// end give zeroes.</para>
/// <para>Input encoding. Byte 0: bit 0 a device without the DMA interface. Then operations until the input ends (at
/// most 1024), an opcode byte (mod 8) and its operands, little-endian:</para>
/// <list type="bullet">
/// <item>0 SELECT key:u16: the selector port (offset 0, 16-bit).</item>
/// <item>1 READ n:u8: n+1 data-port reads (offset 1, 8-bit).</item>
/// <item>2 OUT off:u8 width:u8 value (width bytes): any write, offset mod 13, width 1 &lt;&lt; (byte mod 4).</item>
/// <item>3 IN off:u8 width:u8: any read, the same.</item>
/// <item>4 ACCESS at:u24 control:u32 length:u32 address:u32: an FWCfgDmaAccess (big-endian) into RAM at at.</item>
/// <item>5 DMA how:u8 address:u32: starts a transfer of the structure at address: bit 0 one 64-bit write at offset 4,
/// else the high half at 4 then the low half at 8; bit 1 writes only the high half (no transfer).</item>
/// <item>6 RAM off:u24 n:u8, then n+1 bytes into RAM.</item>
/// <item>7 STATE: saved, loaded back, saved again: the same bytes.</item>
/// </list>
/// <para>Addresses (ACCESS address, DMA address): top two bits 11 → 2^64-1 minus the low 16 bits (wraps), 10 →
/// 0x10_0000 + the low 17 bits (the ROM and past it), else the low 21 bits (RAM, ROM, unmapped).</para>
/// <para>Invariants: no exception escapes; a DMA transfer writes guest memory only in its status word and, for a read,
/// inside [address, address + length); the ROM is unchanged; the state round-trips (STATE); afterwards selecting the
/// signature key reads "QEMU" through the data port and, with DMA, through a DMA read whose status is 0.</para>
/// </remarks>
public sealed class FwCfgTarget : IFuzzTarget
{
    public string Name => "fw-cfg";
    public string Description => "fw_cfg selector, data port and DMA interface (FWCfgDmaAccess from the guest)";

    private const ulong RamSize = 1 << 20;
    private const ulong RomBase = 0x10_0000;
    private const int RomSize = 0x1_0000;
    private const int MaxOps = 1024;

    private static readonly byte[] Hello = "hello, firmware"u8.ToArray();
    private static Rig? s_rig;

    private sealed class Rig
    {
        public readonly GuestMemory Memory = new();
        public readonly byte[] Rom = new byte[RomSize];
        public readonly CheckingDma Dma;
        public readonly FwCfgContent Content = Build(dma: true), NoDmaContent = Build(dma: false);

        public Rig()
        {
            Memory.AddRegion(GuestAddress.Zero, RamSize, "ram");
            Memory.AddRegion(new GuestAddress(RomBase), RomSize, "rom", readOnly: true);
            for (int i = 0; i < RomSize; i++) Rom[i] = (byte)(i * 151 + (i >> 8) + 0x5A);
            Rom.CopyTo(Memory.GetSpan(new GuestAddress(RomBase), RomSize));
            Dma = new CheckingDma(new GuestMemoryDma(Memory));
        }

        private static FwCfgContent Build(bool dma)
        {
            var big = new byte[70_000];
            for (int i = 0; i < big.Length; i++) big[i] = (byte)(i * 7 + (i >> 8));
            return new FwCfgContent.Builder()
                .Item16(0x0f, 4)
                .Item64(0x03, 0x1234_5678_9abc)
                .Item(0x8003, [1, 2, 3])
                .File("etc/zzz", [0xAA])
                .File("bootorder", Hello)
                .File16("etc/sercon-port", 0x3F8)
                .File("etc/empty", [])
                .File("etc/big", big)
                .Build(dma);
        }
    }

    /// <summary>
    /// The machine's adapter, checking that a transfer writes only where its access structure allows: the status word
    /// and, for a read, [address, address + length). <see cref="Expect"/> is called with the structure before each start.
    /// </summary>
    private sealed class CheckingDma(IDmaMemory inner) : IDmaMemory
    {
        private ulong _access, _address, _length;
        private bool _read;

        public void Expect(GuestMemory memory, ulong access)
        {
            _access = access;
            _read = false;
            _address = _length = 0;
            if (!memory.TryGetSpan(new GuestAddress(access), FwCfgDevice.DmaAccessLength, out var s)) return;
            uint control = BinaryPrimitives.ReadUInt32BigEndian(s);
            _read = (control & FwCfgDevice.DmaRead) != 0;
            _length = BinaryPrimitives.ReadUInt32BigEndian(s[4..]);
            _address = BinaryPrimitives.ReadUInt64BigEndian(s[8..]);
        }

        private void Check(ulong address, ulong length)
        {
            if (length == 0) return;
            bool status = address == _access && length == 4;
            bool data = _read && address >= _address && address - _address <= _length && length <= _length - (address - _address);
            Invariant.Holds(status || data,
                $"DMA wrote [0x{address:x}, +{length}) for access at 0x{_access:x} (read={_read}, [0x{_address:x}, +{_length}))");
        }

        public bool Read(ulong address, Span<byte> destination) => inner.Read(address, destination);

        public bool Write(ulong address, ReadOnlySpan<byte> source)
        {
            Check(address, (ulong)source.Length);
            return inner.Write(address, source);
        }

        public bool Zero(ulong address, ulong length)
        {
            Check(address, length);
            return inner.Zero(address, length);
        }
    }

    private static ulong Address(uint a) => (a >> 30) switch
    {
        3 => ulong.MaxValue - (a & 0xFFFF),
        2 => RomBase + (a & 0x1_FFFF),
        _ => a & 0x1F_FFFF,
    };

    public void Run(ReadOnlySpan<byte> input)
    {
        var rig = s_rig ??= new Rig();
        var memory = rig.Memory;
        memory.GetSpan(GuestAddress.Zero, (int)RamSize).Clear();
        var r = new FuzzInput(input);
        bool dma = (r.U8() & 1) == 0;
        var device = dma ? new FwCfgDevice(rig.Content, rig.Dma) : new FwCfgDevice(rig.NoDmaContent, null);

        Span<byte> buf = stackalloc byte[8];
        for (int op = 0; op < MaxOps && r.More; op++)
        {
            switch (r.U8() % 8)
            {
                case 0:
                    BinaryPrimitives.WriteUInt16LittleEndian(buf, r.U16());
                    device.Write(0, buf[..2]);
                    break;
                case 1:
                    {
                        int n = r.U8() + 1;
                        for (int i = 0; i < n; i++) device.Read(1, buf[..1]);
                        break;
                    }
                case 2:
                    {
                        ulong off = r.U8() % 13u;
                        var data = buf[..(1 << (r.U8() % 4))];
                        for (int i = 0; i < data.Length; i++) data[i] = r.U8();
                        Out(rig, device, dma, off, data);
                        break;
                    }
                case 3:
                    device.Read(r.U8() % 13u, buf[..(1 << (r.U8() % 4))]);
                    break;
                case 4:
                    {
                        ulong at = r.U24() % RamSize;
                        uint control = r.U32(), length = r.U32();
                        ulong address = Address(r.U32());
                        if (at + FwCfgDevice.DmaAccessLength > RamSize) at = RamSize - FwCfgDevice.DmaAccessLength;
                        var s = memory.GetSpan(new GuestAddress(at), FwCfgDevice.DmaAccessLength);
                        BinaryPrimitives.WriteUInt32BigEndian(s, control);
                        BinaryPrimitives.WriteUInt32BigEndian(s[4..], length);
                        BinaryPrimitives.WriteUInt64BigEndian(s[8..], address);
                        break;
                    }
                case 5:
                    {
                        byte how = r.U8();
                        ulong access = Address(r.U32());
                        if ((how & 1) != 0)
                        {
                            BinaryPrimitives.WriteUInt64BigEndian(buf, access);
                            Out(rig, device, dma, 4, buf);
                            break;
                        }
                        BinaryPrimitives.WriteUInt32BigEndian(buf, (uint)(access >> 32));
                        Out(rig, device, dma, 4, buf[..4]);
                        if ((how & 2) != 0) break;
                        BinaryPrimitives.WriteUInt32BigEndian(buf, (uint)access);
                        Out(rig, device, dma, 8, buf[..4]);
                        break;
                    }
                case 6:
                    {
                        ulong off = r.U24() % RamSize;
                        int n = r.U8() + 1;
                        var bytes = r.Take((int)Math.Min((ulong)n, RamSize - off));
                        bytes.CopyTo(memory.GetSpan(new GuestAddress(off), bytes.Length));
                        break;
                    }
                default:
                    {
                        byte[] saved = DeviceStateRecord.Save(device);
                        DeviceStateRecord.Load(device, saved);
                        Invariant.Holds(DeviceStateRecord.Save(device).AsSpan().SequenceEqual(saved), "fw-cfg state does not round-trip");
                        break;
                    }
            }
        }

        Invariant.Holds(memory.GetSpan(new GuestAddress(RomBase), RomSize).SequenceEqual(rig.Rom), "the read-only region changed");
        CheckSignature(rig, device, dma);
    }

    /// <summary>
    /// A port write; for one that can start a transfer (offset 8 with 4 bytes, offset 4 with 8), first tells the checker
    /// where the access structure is: the address the device will assemble from its kept high half and this write.
    /// </summary>
    private static void Out(Rig rig, FwCfgDevice device, bool dma, ulong offset, ReadOnlySpan<byte> data)
    {
        if (dma && offset == 8 && data.Length == 4)
            rig.Dma.Expect(rig.Memory, ((ulong)KeptHigh(device) << 32) | BinaryPrimitives.ReadUInt32BigEndian(data));
        else if (dma && offset == 4 && data.Length == 8)
            rig.Dma.Expect(rig.Memory, BinaryPrimitives.ReadUInt64BigEndian(data));
        device.Write(offset, data);
    }

    /// <summary>The DMA address register's kept high half, from the device's own saved state (selector u16, offset u32, high u32).</summary>
    private static uint KeptHigh(FwCfgDevice device)
    {
        var w = new StateWriter();
        device.SaveState(w);
        return BinaryPrimitives.ReadUInt32LittleEndian(w.Written[6..]);
    }

    /// <summary>Selecting the signature key reads "QEMU" by PIO and, with DMA, by a DMA read that reports success.</summary>
    private static void CheckSignature(Rig rig, FwCfgDevice device, bool dma)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(b, FwCfgContent.SignatureKey);
        device.Write(0, b[..2]);
        for (int i = 0; i < 4; i++) device.Read(1, b.Slice(i, 1));
        Invariant.Holds(b.SequenceEqual("QEMU"u8), "the signature key does not read QEMU through the data port");
        if (!dma) return;

        const ulong access = 0x1000, target = 0x2000;
        var memory = rig.Memory;
        var s = memory.GetSpan(new GuestAddress(access), FwCfgDevice.DmaAccessLength);
        BinaryPrimitives.WriteUInt32BigEndian(s, ((uint)FwCfgContent.SignatureKey << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead);
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], 4);
        BinaryPrimitives.WriteUInt64BigEndian(s[8..], target);
        memory.GetSpan(new GuestAddress(target), 4).Clear();
        Span<byte> address = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(address, access);
        Out(rig, device, dma, 4, address);
        Invariant.Holds(BinaryPrimitives.ReadUInt32BigEndian(s) == 0, "the signature DMA read reported an error");
        Invariant.Holds(memory.GetSpan(new GuestAddress(target), 4).SequenceEqual("QEMU"u8), "the signature DMA read did not deliver QEMU");
    }

    // ---- seeds ----------------------------------------------------------------------------------------------

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        const byte Select = 0, Read = 1, In = 3, Access = 4, Dma = 5, State = 7;
        const byte BootOrder = 0x20, Big = 0x21;
        const uint SelectRead = FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead;

        static byte[] U32(uint v) => [(byte)v, (byte)(v >> 8), (byte)(v >> 16), (byte)(v >> 24)];

        // The signature and the id by PIO, the file directory's count and first entry, bootorder by PIO.
        yield return ("pio-file", [0, Select, 0, 0, Read, 3, Select, 1, 0, Read, 3, Select, 0x19, 0, Read, 67, Select, BootOrder, 0, Read, 14, In, 4, 3]);
        // bootorder by DMA: select + read of 15 bytes to 0x2000, access structure at 0x1000 (two 32-bit halves).
        yield return ("dma-file", [0, Access, 0x00, 0x10, 0x00, .. U32(((uint)BootOrder << 16) | SelectRead), .. U32(15), .. U32(0x2000),
            Dma, 0, .. U32(0x1000), State]);
        // etc/big: skip 60,000 bytes, read 12,000 (runs 2,000 past the end: zero-filled) by one 64-bit start; then the
        // rest by PIO; a DMA write (refused with the error bit).
        yield return ("dma-skip-read-write", [0, Access, 0x00, 0x10, 0x00, .. U32(((uint)Big << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaSkip), .. U32(60_000), .. U32(0),
            Dma, 1, .. U32(0x1000), Access, 0x00, 0x10, 0x00, .. U32(FwCfgDevice.DmaRead), .. U32(12_000), .. U32(0x4000), Dma, 1, .. U32(0x1000),
            Read, 0, Access, 0x00, 0x11, 0x00, .. U32(FwCfgDevice.DmaWrite), .. U32(4), .. U32(0x4000), Dma, 0, .. U32(0x1100)]);
        // A DMA read into the ROM and one that runs off the end of RAM (both refused), the DMA signature register.
        yield return ("dma-refused", [0, Access, 0x00, 0x10, 0x00, .. U32(((uint)BootOrder << 16) | SelectRead), .. U32(8), .. U32(0x8000_0000),
            Dma, 0, .. U32(0x1000), Access, 0x00, 0x10, 0x00, .. U32(SelectRead), .. U32(32), .. U32(0x000F_FFF0), Dma, 0, .. U32(0x1000),
            In, 4, 3, In, 8, 2]);
        // No DMA interface: the same file by PIO, DMA writes ignored.
        yield return ("no-dma", [1, Select, BootOrder, 0, Read, 14, Dma, 0, .. U32(0x1000), In, 4, 3]);
    }

}
