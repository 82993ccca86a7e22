using System.Buffers.Binary;
using System.Text;
using Csvmm.Devices.FwCfg;
using Csvmm.Devices.State;

namespace Csvmm.Devices.Tests;

/// <summary>QEMU's fw_cfg as firmware drives it (docs/specs/fw_cfg.rst; SeaBIOS's paravirt.c access pattern).</summary>
public sealed class FwCfgTests
{
    /// <summary>Guest RAM [0, size) as a byte array; everything else is not RAM.</summary>
    private sealed class FakeRam(int size) : IDmaMemory
    {
        public readonly byte[] Bytes = new byte[size];
        public int Writes;

        private bool In(ulong address, ulong length) => address <= (ulong)Bytes.Length && length <= (ulong)Bytes.Length - address;

        public bool Read(ulong address, Span<byte> destination)
        {
            if (!In(address, (ulong)destination.Length)) return false;
            Bytes.AsSpan((int)address, destination.Length).CopyTo(destination);
            return true;
        }

        public bool Write(ulong address, ReadOnlySpan<byte> source)
        {
            if (!In(address, (ulong)source.Length)) return false;
            source.CopyTo(Bytes.AsSpan((int)address));
            Writes++;
            return true;
        }

        public bool Zero(ulong address, ulong length)
        {
            if (!In(address, length)) return false;
            Bytes.AsSpan((int)address, (int)length).Clear();
            Writes++;
            return true;
        }
    }

    private static readonly byte[] Hello = Encoding.ASCII.GetBytes("hello, firmware");

    private static FwCfgContent Content(bool dma = true) => new FwCfgContent.Builder()
        .Item16(0x0f, 4)
        .Item64(0x03, 0x1234_5678_9abc)
        .File("etc/zzz", [0xAA])
        .File("bootorder", Hello)
        .File16("etc/sercon-port", 0x3F8)
        .Build(dma);

    private static void Select(FwCfgDevice d, ushort key)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, key);
        d.Write(0, b);
    }

    private static byte[] ReadData(FwCfgDevice d, int count)
    {
        var r = new byte[count];
        Span<byte> one = stackalloc byte[1];
        for (int i = 0; i < count; i++) { d.Read(1, one); r[i] = one[0]; }
        return r;
    }

    private static void StartDma(FwCfgDevice d, ulong accessAt)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(accessAt >> 32));
        d.Write(4, b);
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)accessAt);
        d.Write(8, b);
    }

    private static void PutAccess(FakeRam ram, int at, uint control, uint length, ulong address)
    {
        BinaryPrimitives.WriteUInt32BigEndian(ram.Bytes.AsSpan(at), control);
        BinaryPrimitives.WriteUInt32BigEndian(ram.Bytes.AsSpan(at + 4), length);
        BinaryPrimitives.WriteUInt64BigEndian(ram.Bytes.AsSpan(at + 8), address);
    }

    private static uint Control(FakeRam ram, int at) => BinaryPrimitives.ReadUInt32BigEndian(ram.Bytes.AsSpan(at));

    [Fact]
    public void Signature_and_id_through_the_ports()
    {
        var d = new FwCfgDevice(Content(), new FakeRam(4096));
        Select(d, FwCfgContent.SignatureKey);
        Assert.Equal("QEMU"u8.ToArray(), ReadData(d, 4));
        Assert.Equal(new byte[3], ReadData(d, 3)); // past the end: zeros
        Select(d, FwCfgContent.IdKey);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(ReadData(d, 4)));

        var noDma = new FwCfgDevice(Content(dma: false), null);
        Select(noDma, FwCfgContent.IdKey);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ReadData(noDma, 4)));
        var sig = new byte[8];
        noDma.Read(4, sig);
        Assert.Equal(new byte[8], sig); // no DMA register
    }

    [Fact]
    public void Legacy_items_are_little_endian_and_unknown_keys_read_zero()
    {
        var d = new FwCfgDevice(Content(), new FakeRam(4096));
        Select(d, 0x0f);
        Assert.Equal(new byte[] { 4, 0 }, ReadData(d, 2));
        Select(d, 0x03);
        Assert.Equal(0x1234_5678_9abcUL, BinaryPrimitives.ReadUInt64LittleEndian(ReadData(d, 8)));
        Select(d, 0x0d); // NUMA: absent here, so firmware reads a count of 0
        Assert.Equal(new byte[8], ReadData(d, 8));
        Select(0x0f | FwCfgContent.WriteBit, d);
        Assert.Equal(new byte[2], ReadData(d, 2)); // the write channel of a key reads nothing
    }

    private static void Select(int key, FwCfgDevice d) => Select(d, (ushort)key);

    [Fact]
    public void File_directory_is_sorted_by_name_big_endian_with_keys_from_0x20()
    {
        var d = new FwCfgDevice(Content(), new FakeRam(4096));
        Select(d, FwCfgContent.FileDirectoryKey);
        var count = BinaryPrimitives.ReadUInt32BigEndian(ReadData(d, 4));
        Assert.Equal(3u, count);
        var names = new List<(string, uint, ushort)>();
        for (int i = 0; i < count; i++)
        {
            var e = ReadData(d, 64);
            uint size = BinaryPrimitives.ReadUInt32BigEndian(e);
            ushort key = BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(4));
            Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(6)));
            string name = Encoding.ASCII.GetString(e, 8, 56).TrimEnd('\0');
            names.Add((name, size, key));
        }
        Assert.Equal([("bootorder", (uint)Hello.Length, (ushort)0x20), ("etc/sercon-port", 2u, (ushort)0x21), ("etc/zzz", 1u, (ushort)0x22)], names);
        Select(d, 0x20);
        Assert.Equal(Hello, ReadData(d, Hello.Length));
        Select(d, 0x21);
        Assert.Equal(new byte[] { 0xF8, 0x03 }, ReadData(d, 2));
    }

    [Fact]
    public void Dma_register_reads_the_signature_and_a_select_read_copies_the_file()
    {
        var ram = new FakeRam(4096);
        var d = new FwCfgDevice(Content(), ram);
        var sig = new byte[8];
        d.Read(4, sig);
        Assert.Equal("QEMU CFG"u8.ToArray(), sig);
        var low = new byte[4];
        d.Read(8, low);
        Assert.Equal(" CFG"u8.ToArray(), low);

        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, (uint)Hello.Length, 0x200);
        StartDma(d, 0x100);
        Assert.Equal(0u, Control(ram, 0x100));
        Assert.Equal(Hello, ram.Bytes.AsSpan(0x200, Hello.Length).ToArray());
        Assert.Equal((1L, 0L), d.DmaCounts);
    }

    [Fact]
    public void Dma_read_past_the_end_is_zero_filled_and_skip_moves_the_offset()
    {
        var ram = new FakeRam(4096);
        ram.Bytes.AsSpan(0x300, 64).Fill(0xEE);
        var d = new FwCfgDevice(Content(), ram);
        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaSkip, 7, 0);
        StartDma(d, 0x100);
        Assert.Equal(0u, Control(ram, 0x100));
        PutAccess(ram, 0x100, FwCfgDevice.DmaRead, 32, 0x300);
        StartDma(d, 0x100);
        Assert.Equal(0u, Control(ram, 0x100));
        Assert.Equal(Hello.AsSpan(7).ToArray(), ram.Bytes.AsSpan(0x300, Hello.Length - 7).ToArray());
        Assert.All(ram.Bytes.AsSpan(0x300 + Hello.Length - 7, 32 - (Hello.Length - 7)).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xEE, ram.Bytes[0x300 + 32]);
        // The traditional port continues where DMA stopped: at the end.
        Assert.Equal(new byte[1], ReadData(d, 1));
    }

    [Fact]
    public void Dma_write_and_transfers_outside_ram_end_with_the_error_bit_and_write_nothing()
    {
        var ram = new FakeRam(4096);
        var d = new FwCfgDevice(Content(), ram);
        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaWrite, 4, 0x200);
        StartDma(d, 0x100);
        Assert.Equal(FwCfgDevice.DmaError, Control(ram, 0x100));

        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, 8, 4090); // runs off RAM
        int writes = ram.Writes;
        StartDma(d, 0x100);
        Assert.Equal(FwCfgDevice.DmaError, Control(ram, 0x100));
        Assert.Equal(writes + 1, ram.Writes); // only the status
        Assert.All(ram.Bytes.AsSpan(4090).ToArray(), b => Assert.Equal(0, b));

        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, uint.MaxValue, ulong.MaxValue - 3); // wraps
        StartDma(d, 0x100);
        Assert.Equal(FwCfgDevice.DmaError, Control(ram, 0x100));

        writes = ram.Writes;
        StartDma(d, 0xFFFF_FFFF_0000_0000); // the access structure itself is not in RAM
        Assert.Equal(writes, ram.Writes);
        Assert.Equal((4L, 4L), d.DmaCounts);
    }

    [Fact]
    public void Dma_with_no_operation_bits_completes_without_moving_data()
    {
        var ram = new FakeRam(4096);
        var d = new FwCfgDevice(Content(), ram);
        PutAccess(ram, 0x100, (0x21u << 16) | FwCfgDevice.DmaSelect, 100, 0x200);
        StartDma(d, 0x100);
        Assert.Equal(0u, Control(ram, 0x100));
        Assert.All(ram.Bytes.AsSpan(0x200, 100).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(new byte[] { 0xF8, 0x03 }, ReadData(d, 2)); // selected, offset 0
    }

    [Fact]
    public void A_64_bit_write_starts_the_transfer_and_odd_accesses_are_ignored()
    {
        var ram = new FakeRam(4096);
        var d = new FwCfgDevice(Content(), ram);
        PutAccess(ram, 0x100, (0x20u << 16) | FwCfgDevice.DmaSelect | FwCfgDevice.DmaRead, 5, 0x200);
        var be = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, 0x100);
        d.Write(4, be);
        Assert.Equal(Hello.AsSpan(0, 5).ToArray(), ram.Bytes.AsSpan(0x200, 5).ToArray());
        d.Write(1, [0x55]);     // data port writes: ignored
        d.Write(0, [0x19]);     // a byte write to the selector: not a select
        d.Write(5, [1, 2]);     // misaligned DMA register access
        Assert.Equal((1L, 0L), d.DmaCounts);
        var wide = new byte[4];
        d.Read(0, wide);
        Assert.Equal(new byte[4], wide);
    }

    [Fact]
    public void State_round_trip_continues_the_read_and_refuses_an_offset_past_the_item()
    {
        var ram = new FakeRam(4096);
        var a = new FwCfgDevice(Content(), ram);
        Select(a, 0x20);
        ReadData(a, 3);
        var record = DeviceStateRecord.Save(a);
        var b = new FwCfgDevice(Content(), ram);
        DeviceStateRecord.Load(b, record);
        Assert.Equal(Hello.AsSpan(3, 4).ToArray(), ReadData(b, 4));

        var w = new StateWriter();
        w.U16(0x22); w.U32(2); w.U32(0); // etc/zzz has 1 byte
        Assert.Throws<DeviceStateException>(() => b.LoadState(w.Written, 1));
        Assert.Equal(Hello.AsSpan(7, 2).ToArray(), ReadData(b, 2)); // unchanged
        Assert.Throws<DeviceStateException>(() => b.LoadState(w.Written, 2));
        Assert.Throws<DeviceStateException>(() => b.LoadState(w.Written[..5], 1));
    }

    [Theory]
    [InlineData("")]
    [InlineData("a name with spaces")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567")]
    public void Builder_refuses_a_bad_file_name(string name)
    {
        Assert.Throws<ArgumentException>(() => new FwCfgContent.Builder().File(name, [1]));
    }

    [Fact]
    public void Builder_refuses_duplicates_reserved_keys_and_file_keys()
    {
        var b = new FwCfgContent.Builder().File("x", [1]).Item16(0x0f, 1);
        Assert.Throws<ArgumentException>(() => b.File("x", [2]));
        Assert.Throws<ArgumentException>(() => b.Item16(0x0f, 2));
        Assert.Throws<ArgumentException>(() => b.Item16(FwCfgContent.SignatureKey, 2));
        Assert.Throws<ArgumentException>(() => b.Item16(FwCfgContent.FileDirectoryKey, 2));
        Assert.Throws<ArgumentException>(() => b.Item16(0x20, 2));
        Assert.Throws<ArgumentException>(() => b.Item16(0x4005, 2));
        b.Item16(0x8002, 1); // arch-local legacy keys are fine
    }

    [Fact]
    public void Content_with_dma_needs_memory()
    {
        Assert.Throws<ArgumentException>(() => new FwCfgDevice(Content(dma: true), null));
    }
}
