using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Devices;
using Csvmm.Devices.State;
using Csvmm.Ide;
using Csvmm.Memory;
using Microsoft.Win32.SafeHandles;

namespace Csvmm.Fuzz.Targets;

/// <summary>
/// The PIIX3 IDE controller as a hostile guest drives it: task-file and control ports of both legacy channels, the
/// bus-master registers (BAR 4) with PRD tables from the input, the PCI configuration space, PIO data bursts; disk
/// requests complete inside the port write that starts them (channels built without their I/O thread).
/// </summary>
/// <remarks>
/// <para>Machine: 1 MiB of RAM at 0 and a 64 KiB ROM right after it at 0x10_0000; a 256 KiB scratch image (one per
/// process, unlinked once open, contents carried over between runs). Primary channel (with bus-master DMA): master on
/// the image, slave on a read-only view of it. Secondary channel: slave only, on the image, either without DMA memory
/// (its bus-master half floats) or with it (byte 0 bit 2). The controllers are reused: each run starts with a platform
/// reset (<see cref="PiixIde.Reset"/>) and zeroed RAM. Reads past the input's end give zeroes.</para>
/// <para>Input encoding. Byte 0: bit 0 firmware set-up (PCI command = I/O + bus master, IDE decode enabled), bit 1
/// interrupts disabled (nIEN) on both channels, bit 2 the secondary channel with bus-master DMA. Then operations until
/// the input ends (at most 512), an opcode byte (mod 12) and its operands, little-endian:</para>
/// <list type="bullet">
/// <item>0 OUT port:u8 width:u8 value (width bytes): port mod 40 = 0-8 primary command block offsets 0-8, 9-10 primary
/// control block 0-1, 11-19 secondary command block 0-8, 20-21 secondary control block 0-1, 22-39 BAR 4 offsets 0-17;
/// width = 1 &lt;&lt; (byte mod 3).</item>
/// <item>1 IN port:u8 width:u8: a read of the same.</item>
/// <item>2 DATA-OUT how:u8 count:u16: (count mod 4096)+1 writes of a pattern to a data port (how bit 0 secondary, bit 1 32-bit).</item>
/// <item>3 DATA-IN how:u8 count:u16: (count mod 4096)+1 reads of a data port.</item>
/// <item>4 ATA how:u8 command:u8 count:u16 lba:u32: selects the drive (how bit 0 secondary, bit 1 slave) and loads the
/// task file, then writes the command. how bit 2: LBA48 (previous bytes: count high, lba bits 24-31, 0, 0; then
/// count low, lba bits 0-23); otherwise the device register has LBA (bit 3 clear) or CHS (bit 3 set) mode and lba
/// bits 24-27, features = count's high byte, sector count its low byte, LBA low/mid/high lba bits 0-23.</item>
/// <item>5 PRD off:u24 n:u8, then n+1 entries addr:u32 len:u16 flags:u8: a PRD table in RAM at off (dword aligned).
/// addr: top bits 11 → 0xFFFF0000 | low 16 bits, 10 → 0x10_0000 + low 17 bits (ROM and past it), else low 21 bits.
/// flags bit 0 EOT, bit 1 adds reserved bits.</item>
/// <item>6 DMA-GO how:u8 table:u24: points the primary (how bit 0 clear) or secondary bus master at table, then
/// writes the command register with START and, from bit 1, the direction (to memory); bit 2 then stops it again.</item>
/// <item>7 RAM off:u24 n:u8, then n+1 bytes into RAM.</item>
/// <item>8 PCI off:u8 width:u8 value (width bytes): a configuration write, then a read of it.</item>
/// <item>9 SRST how:u8: device control on a channel (bit 0 secondary): SRST with bits 1 (nIEN) and 7 (HOB), then
/// released unless bit 2.</item>
/// <item>10 STATE how:u8: a channel's (bit 0) state saved, loaded back and saved again: the same bytes.</item>
/// <item>11 RESET how:u8: platform reset; bit 0 the firmware set-up again.</item>
/// </list>
/// <para>Invariants: no exception escapes; the ROM is unchanged; the image keeps its size; the state round-trips
/// (STATE); afterwards, after SRST on both channels, the primary master and the secondary slave show the ATA reset signature and
/// answers IDENTIFY DEVICE with DRQ and 512 bytes: general configuration 0x0040, the 512-sector capacity, the model,
/// signature 0xA5 and a zero checksum.</para>
/// </remarks>
public sealed class IdeTarget : IFuzzTarget
{
    public string Name => "ide";
    public string Description => "PIIX3 IDE (ATA task file, PIO, bus-master DMA with PRD tables, PCI config) driven by a hostile guest";

    private const ulong RamSize = 1 << 20;
    private const ulong RomBase = 0x10_0000;
    private const int RomSize = 0x1_0000;
    private const int ImageSize = 256 << 10;
    private const int MaxOps = 512;
    private const int MaxBurst = 4096; // a 16-sector READ/WRITE MULTIPLE block in 16-bit accesses
    private const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;

    private static Rig? s_rig;

    private sealed class CountingIrq : IIrqLine
    {
        public long Raises;
        public bool Level;

        public void Set(bool level)
        {
            if (level && !Level) Raises++;
            Level = level;
        }
    }

    private sealed class Rig
    {
        public readonly GuestMemory Memory = new();
        public readonly byte[] Rom = new byte[RomSize];
        public readonly RawDisk Disk;
        public readonly SafeFileHandle Image;
        public readonly Controller[] Controllers;

        public Rig()
        {
            Memory.AddRegion(GuestAddress.Zero, RamSize, "ram");
            Memory.AddRegion(new GuestAddress(RomBase), RomSize, "rom", readOnly: true);
            for (int i = 0; i < RomSize; i++) Rom[i] = (byte)(i * 151 + (i >> 8) + 0x5A);
            Rom.CopyTo(Memory.GetSpan(new GuestAddress(RomBase), RomSize));
            (Disk, Image) = ScratchImage.Open("ide", ImageSize);
            var primary = new IdeChannel(new CountingIrq(), new IdeDrive(Disk, "FUZZ-PM"), new IdeDrive(new ReadOnlyDiskView(Disk), "FUZZ-PS"),
                Memory, ioThread: false);
            Controllers =
            [
                new Controller(primary, new IdeChannel(new CountingIrq(), null, new IdeDrive(Disk, "FUZZ-SS"), dmaMemory: null, ioThread: false)),
                new Controller(primary, new IdeChannel(new CountingIrq(), null, new IdeDrive(Disk, "FUZZ-SD"), Memory, ioThread: false)),
            ];
        }
    }

    /// <summary>The PIIX function over the shared primary channel and one of the two secondary channels.</summary>
    private sealed class Controller
    {
        public readonly IdeChannel Primary, Secondary;
        public readonly PiixIde Piix;
        public readonly IBusDevice Bar;
        public readonly IBusDevice[] Ports = new IBusDevice[40];
        public readonly ulong[] Offsets = new ulong[40];

        public Controller(IdeChannel primary, IdeChannel secondary)
        {
            Primary = primary;
            Secondary = secondary;
            Piix = new PiixIde(primary, secondary);
            Bar = Piix.GetBarDevice(PiixIde.BusMasterBar)!;
            // OUT/IN port numbers 0-39 → device and offset.
            for (int p = 0; p < 40; p++)
            {
                (Ports[p], Offsets[p]) = p switch
                {
                    <= 8 => (primary.CommandBlock, (ulong)p),
                    <= 10 => (primary.ControlBlock, (ulong)(p - 9)),
                    <= 19 => (secondary.CommandBlock, (ulong)(p - 11)),
                    <= 21 => (secondary.ControlBlock, (ulong)(p - 20)),
                    _ => (Bar, (ulong)(p - 22)),
                };
            }
        }
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var rig = s_rig ??= new Rig();
        var memory = rig.Memory;
        memory.GetSpan(GuestAddress.Zero, (int)RamSize).Clear();
        var r = new FuzzInput(input);
        byte config = r.U8();
        var c = rig.Controllers[(config >> 2) & 1];
        c.Piix.Reset();
        if ((config & 1) != 0) FirmwareSetUp(c);
        if ((config & 2) != 0)
        {
            c.Primary.ControlBlock.Write(0, [AtaControl.NIen]);
            c.Secondary.ControlBlock.Write(0, [AtaControl.NIen]);
        }

        Span<byte> buf = stackalloc byte[4];
        for (int op = 0; op < MaxOps && r.More; op++)
        {
            switch (r.U8() % 12)
            {
                case 0:
                    {
                        int port = r.U8() % 40;
                        var data = buf[..(1 << (r.U8() % 3))];
                        for (int i = 0; i < data.Length; i++) data[i] = r.U8();
                        c.Ports[port].Write(c.Offsets[port], data);
                        break;
                    }
                case 1:
                    {
                        int port = r.U8() % 40;
                        c.Ports[port].Read(c.Offsets[port], buf[..(1 << (r.U8() % 3))]);
                        break;
                    }
                case 2:
                    {
                        byte how = r.U8();
                        int count = r.U16() % MaxBurst + 1;
                        var port = (how & 1) != 0 ? c.Secondary.CommandBlock : c.Primary.CommandBlock;
                        var data = buf[..((how & 2) != 0 ? 4 : 2)];
                        for (int i = 0; i < count; i++)
                        {
                            BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)(i * 0x9E3779B1));
                            port.Write(0, data);
                        }
                        break;
                    }
                case 3:
                    {
                        byte how = r.U8();
                        int count = r.U16() % MaxBurst + 1;
                        var port = (how & 1) != 0 ? c.Secondary.CommandBlock : c.Primary.CommandBlock;
                        var data = buf[..((how & 2) != 0 ? 4 : 2)];
                        for (int i = 0; i < count; i++) port.Read(0, data);
                        break;
                    }
                case 4:
                    {
                        byte how = r.U8(), command = r.U8();
                        ushort count = r.U16();
                        uint lba = r.U32();
                        Ata(c, how, command, count, lba);
                        break;
                    }
                case 5:
                    {
                        ulong table = (r.U24() % RamSize) & ~3UL;
                        int n = r.U8() + 1;
                        for (int i = 0; i < n; i++)
                        {
                            uint a = r.U32();
                            uint address = (a >> 30) switch
                            {
                                3 => 0xFFFF_0000 | (a & 0xFFFF),
                                2 => (uint)RomBase + (a & 0x1_FFFF),
                                _ => a & 0x1F_FFFF,
                            };
                            ushort length = r.U16();
                            byte flags = r.U8();
                            ulong at = table + 8 * (ulong)i;
                            if (at + 8 > RamSize) break;
                            var e = memory.GetSpan(new GuestAddress(at), 8);
                            BinaryPrimitives.WriteUInt32LittleEndian(e, address);
                            BinaryPrimitives.WriteUInt16LittleEndian(e[4..], length);
                            BinaryPrimitives.WriteUInt16LittleEndian(e[6..], (ushort)(((flags & 1) != 0 ? 0x8000 : 0) | ((flags & 2) != 0 ? 0x1234 : 0)));
                        }
                        break;
                    }
                case 6:
                    {
                        byte how = r.U8();
                        uint table = r.U24();
                        ulong bm = (how & 1) != 0 ? (ulong)PiixIde.SecondaryBusMasterOffset : 0;
                        BinaryPrimitives.WriteUInt32LittleEndian(buf, table);
                        c.Bar.Write(bm + 4, buf);
                        byte direction = (how & 2) != 0 ? BusMasterBits.ToMemory : (byte)0;
                        c.Bar.Write(bm, [direction]);
                        c.Bar.Write(bm, [(byte)(direction | BusMasterBits.Start)]);
                        if ((how & 4) != 0) c.Bar.Write(bm, [direction]);
                        break;
                    }
                case 7:
                    {
                        ulong off = r.U24() % RamSize;
                        int n = r.U8() + 1;
                        var bytes = r.Take((int)Math.Min((ulong)n, RamSize - off));
                        bytes.CopyTo(memory.GetSpan(new GuestAddress(off), bytes.Length));
                        break;
                    }
                case 8:
                    {
                        int off = r.U8();
                        var data = buf[..(1 << (r.U8() % 3))];
                        for (int i = 0; i < data.Length; i++) data[i] = r.U8();
                        if (off + data.Length > 256) off = 256 - data.Length;
                        c.Piix.WriteConfig(off, data);
                        c.Piix.ReadConfig(off, data);
                        break;
                    }
                case 9:
                    {
                        byte how = r.U8();
                        var control = (how & 1) != 0 ? c.Secondary.ControlBlock : c.Primary.ControlBlock;
                        byte bits = (byte)(how & (AtaControl.NIen | AtaControl.Hob));
                        control.Write(0, [(byte)(bits | AtaControl.Srst)]);
                        if ((how & 4) == 0) control.Write(0, [bits]);
                        break;
                    }
                case 10:
                    RoundTrip((r.U8() & 1) != 0 ? c.Secondary : c.Primary);
                    break;
                default:
                    c.Piix.Reset();
                    if ((r.U8() & 1) != 0) FirmwareSetUp(c);
                    break;
            }
        }

        Invariant.Holds(memory.GetSpan(new GuestAddress(RomBase), RomSize).SequenceEqual(rig.Rom), "the read-only region changed");
        Invariant.Holds(RandomAccess.GetLength(rig.Image) == ImageSize, "the image changed size");
        CheckIdentifyAfterReset(c.Primary, drive: 0, "primary master");
        CheckIdentifyAfterReset(c.Secondary, drive: 1, "secondary slave");
    }

    private static void FirmwareSetUp(Controller c)
    {
        c.Piix.WriteConfig(0x04, [0x05, 0x00]); // I/O space + bus master
        c.Piix.EnableLegacyDecode();
    }

    private static void Ata(Controller c, byte how, byte command, ushort count, uint lba)
    {
        var port = (how & 1) != 0 ? c.Secondary.CommandBlock : c.Primary.CommandBlock;
        int slave = (how & 2) != 0 ? 0x10 : 0;
        if ((how & 4) != 0)
        {
            port.Write(6, [(byte)(0x40 | slave)]);
            port.Write(2, [(byte)(count >> 8)]);
            port.Write(3, [(byte)(lba >> 24)]);
            port.Write(4, [0]);
            port.Write(5, [0]);
            port.Write(2, [(byte)count]);
            port.Write(3, [(byte)lba]);
            port.Write(4, [(byte)(lba >> 8)]);
            port.Write(5, [(byte)(lba >> 16)]);
        }
        else
        {
            int mode = (how & 8) != 0 ? 0xA0 : 0xE0; // CHS: head in the low nibble; LBA28: bits 24-27
            port.Write(6, [(byte)(mode | slave | (int)((lba >> 24) & 0x0F))]);
            port.Write(1, [(byte)(count >> 8)]);
            port.Write(2, [(byte)count]);
            port.Write(3, [(byte)lba]);
            port.Write(4, [(byte)(lba >> 8)]);
            port.Write(5, [(byte)(lba >> 16)]);
        }
        port.Write(7, [command]);
    }

    /// <summary>Save, load into the same channel, save again: the two records must be identical.</summary>
    private static void RoundTrip(IdeChannel channel)
    {
        byte[] saved = DeviceStateRecord.Save(channel);
        DeviceStateRecord.Load(channel, saved);
        Invariant.Holds(DeviceStateRecord.Save(channel).AsSpan().SequenceEqual(saved), "ide-channel state does not round-trip");
    }

    private static byte In(IBusDevice port, ulong offset)
    {
        Span<byte> b = stackalloc byte[1];
        port.Read(offset, b);
        return b[0];
    }

    /// <summary>SRST, the reset signature, then IDENTIFY DEVICE by PIO: status, 512 bytes, the fields that do not depend on settings.</summary>
    private static void CheckIdentifyAfterReset(IdeChannel channel, int drive, string which)
    {
        var cmd = channel.CommandBlock;
        channel.ControlBlock.Write(0, [AtaControl.Srst]);
        channel.ControlBlock.Write(0, [0]);
        cmd.Write(6, [(byte)(0xA0 | (drive << 4))]);
        Invariant.Holds(In(cmd, 2) == 1 && In(cmd, 3) == 1 && In(cmd, 4) == 0 && In(cmd, 5) == 0,
            $"{which}: no ATA signature after SRST ({In(cmd, 2)},{In(cmd, 3)},{In(cmd, 4)},{In(cmd, 5)})");
        byte status = In(channel.ControlBlock, 0);
        Invariant.Holds(status == Ready, $"{which}: status 0x{status:x2} after SRST");

        cmd.Write(7, [AtaCommand.IdentifyDevice]);
        status = In(cmd, 7);
        Invariant.Holds(status == (Ready | AtaStatus.Drq), $"{which}: IDENTIFY DEVICE gave status 0x{status:x2}");
        Span<byte> block = stackalloc byte[IdeDrive.SectorSize];
        for (int i = 0; i < block.Length; i += 2) cmd.Read(0, block.Slice(i, 2));
        status = In(cmd, 7);
        Invariant.Holds(status == Ready, $"{which}: status 0x{status:x2} after the IDENTIFY data");
        byte sum = 0;
        foreach (byte b in block) sum += b;
        Invariant.Holds(BinaryPrimitives.ReadUInt16LittleEndian(block) == 0x0040 && block[510] == 0xA5 && sum == 0,
            $"{which}: IDENTIFY data has a bad configuration word, signature or checksum");
        Invariant.Holds(BinaryPrimitives.ReadUInt32LittleEndian(block[120..]) == ImageSize / IdeDrive.SectorSize,
            $"{which}: IDENTIFY capacity is wrong");
        Span<byte> model = stackalloc byte[40];
        for (int i = 0; i < model.Length; i++) model[i] = block[54 + (i ^ 1)];
        Invariant.Holds(model.TrimEnd((byte)' ').SequenceEqual("CSVMM HARDDISK"u8), $"{which}: IDENTIFY model is wrong");
        cmd.Read(0, block[..2]);
        Invariant.Holds(block[0] == 0 && block[1] == 0, $"{which}: data port still delivers bytes after IDENTIFY");
    }

    // ---- seeds ----------------------------------------------------------------------------------------------

    public IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        const byte Out = 0, In = 1, DataOut = 2, DataIn = 3, Ata = 4, Prd = 5, DmaGo = 6, State = 10, Srst = 9;
        const byte PriStatus = 7, BmStatus = 22 + 2;

        // IDENTIFY DEVICE on the primary master, its 256 words read, the status.
        yield return ("identify", [0, Ata, 0, AtaCommand.IdentifyDevice, 0, 0, 0, 0, 0, 0, DataIn, 0, 255, 0, In, PriStatus, 0]);
        // Bus master on; PRD table at 0x1000: 4 KiB at 0x2000 (EOT); READ DMA of 8 sectors from LBA 0; START; status.
        yield return ("dma-read", [1, Prd, 0x00, 0x10, 0x00, 0, 0x00, 0x20, 0x00, 0x00, 0x00, 0x10, 1,
            Ata, 0, AtaCommand.ReadDma, 8, 0, 0, 0, 0, 0, DmaGo, 2, 0x00, 0x10, 0x00, In, BmStatus, 0, In, PriStatus, 0]);
        // WRITE SECTORS of 2 sectors at LBA 5 by PIO (512 words), READ SECTORS of them back (512 words).
        yield return ("pio-write-read", [0, Ata, 0, AtaCommand.WriteSectors, 2, 0, 5, 0, 0, 0, DataOut, 0, 255, 1,
            Ata, 0, AtaCommand.ReadSectors, 2, 0, 5, 0, 0, 0, DataIn, 0, 255, 1, In, PriStatus, 0]);
        // WRITE DMA EXT (LBA48) of 4 sectors at 100 from two PRD entries, then FLUSH CACHE EXT.
        yield return ("dma-write-ext", [1, Prd, 0x00, 0x30, 0x00, 1, 0x00, 0x40, 0x00, 0x00, 0x00, 0x04, 0, 0x00, 0x50, 0x00, 0x00, 0x00, 0x04, 1,
            Ata, 4, AtaCommand.WriteDmaExt, 4, 0, 100, 0, 0, 0, DmaGo, 0, 0x00, 0x30, 0x00, In, BmStatus, 0,
            Ata, 0, AtaCommand.FlushCacheExt, 0, 0, 0, 0, 0, 0, In, PriStatus, 0]);
        // SET MULTIPLE 4, READ MULTIPLE of 8 sectors (two blocks), SRST, a refused write to the read-only slave.
        yield return ("multiple-srst-readonly", [0, Ata, 0, AtaCommand.SetMultipleMode, 4, 0, 0, 0, 0, 0,
            Ata, 0, AtaCommand.ReadMultiple, 8, 0, 0, 0, 0, 0, DataIn, 2, 255, 3, Srst, 0,
            Ata, 2, AtaCommand.WriteSectors, 1, 0, 0, 0, 0, 0, In, PriStatus, 0, Out, 1, 0, 0x00]);
        // The secondary channel's slave: SET FEATURES (UDMA 5 refused without DMA), IDENTIFY; state saved and loaded mid-transfer.
        yield return ("secondary-state", [0, Ata, 3, AtaCommand.SetFeatures, 0x45, 0x03, 0, 0, 0, 0,
            Ata, 3, AtaCommand.IdentifyDevice, 0, 0, 0, 0, 0, 0, DataIn, 1, 99, 0, State, 1, DataIn, 1, 155, 0, State, 0]);
    }

}
