using System.Buffers.Binary;
using System.Numerics;
using Iced.Intel;

namespace Csvmm.TinyGuests.Tests;

/// <summary>The image builder, the operation block, the pattern and the command lines, without running a VMM.</summary>
public sealed class DiskGuestImageTests
{
    private static readonly DiskGuestOptions Simple = new() { Interface = DiskInterface.Virtio, Operations = [DiskOp.Flush()] };

    private static int Offset(uint address) => (int)(address - FirmwareImage.LowBase);

    [Fact]
    public void ImageIsOneBiosSegmentWithAResetVectorToTheEntry()
    {
        byte[] image = DiskGuest.Build(Simple);
        Assert.Equal(FirmwareImage.Size, image.Length);
        // jmp far F000:0000 at F000:FFF0
        Assert.Equal(new byte[] { 0xEA, 0x00, 0x00, 0x00, 0xF0 }, image.AsSpan(0xFFF0, 5).ToArray());
    }

    [Fact]
    public void OptionsOnlyChangeTheOperationBlock()
    {
        byte[] a = DiskGuest.Build(Simple);
        byte[] b = DiskGuest.Build(new DiskGuestOptions
        {
            Interface = DiskInterface.IdeDma, ForceLba48 = true, Slave = true, SecondaryChannel = true, PioMultiple = 8, ChunkSectors = 17,
            Operations = [DiskOp.Write(5, 6, 7), DiskOp.BenchRandom(100, 8, 32, 9, 4096)],
        });
        int blockStart = Offset(GuestLayout.OpBlock), blockEnd = blockStart + GuestLayout.OpBlockSize;
        for (int i = 0; i < a.Length; i++)
            if (i < blockStart || i >= blockEnd) Assert.True(a[i] == b[i], $"byte 0x{i:x} differs outside the operation block");
    }

    [Fact]
    public void OperationBlockHasTheDocumentedLayout()
    {
        byte[] image = DiskGuest.Build(new DiskGuestOptions
        {
            Interface = DiskInterface.IdePio, ForceLba48 = true, Slave = true, PioMultiple = 16, ChunkSectors = 64, TimeoutSeconds = 2,
            Operations = [DiskOp.ReadVerify(0x1_0000_0001, 3, 0xABCD), DiskOp.BenchSequential(10, 20, 256, 4)],
        });
        ReadOnlySpan<byte> h = image.AsSpan(Offset(GuestLayout.OpBlock));
        Assert.Equal(GuestLayout.Magic, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrMagic..]));
        Assert.Equal((uint)DiskInterface.IdePio, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrInterface..]));
        Assert.Equal(GuestLayout.FlagForceLba48 | GuestLayout.FlagSlave, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrFlags..]));
        Assert.Equal(64u, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrChunk..]));
        Assert.Equal(16u, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrPioMultiple..]));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(h[GuestLayout.HdrOpCount..]));
        Assert.Equal(8_000_000_000UL, BinaryPrimitives.ReadUInt64LittleEndian(h[GuestLayout.HdrTimeout..]));
        ReadOnlySpan<byte> op0 = h[GuestLayout.OpHeaderSize..], op1 = h[(GuestLayout.OpHeaderSize + GuestLayout.OpSize)..];
        Assert.Equal((uint)DiskOpKind.ReadVerify, BinaryPrimitives.ReadUInt32LittleEndian(op0[GuestLayout.OpKind..]));
        Assert.Equal(0x1_0000_0001UL, BinaryPrimitives.ReadUInt64LittleEndian(op0[GuestLayout.OpLba..]));
        Assert.Equal(3UL, BinaryPrimitives.ReadUInt64LittleEndian(op0[GuestLayout.OpCount..]));
        Assert.Equal(0xABCDUL, BinaryPrimitives.ReadUInt64LittleEndian(op0[GuestLayout.OpSeed..]));
        Assert.Equal((uint)DiskOpKind.BenchSequential, BinaryPrimitives.ReadUInt32LittleEndian(op1[GuestLayout.OpKind..]));
        Assert.Equal(256, BinaryPrimitives.ReadUInt16LittleEndian(op1[GuestLayout.OpRequestSectors..]));
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(op1[GuestLayout.OpQueueDepth..]));
        Assert.Equal(10UL, BinaryPrimitives.ReadUInt64LittleEndian(op1[GuestLayout.OpLba..]));
        Assert.Equal(20UL, BinaryPrimitives.ReadUInt64LittleEndian(op1[GuestLayout.OpCount..]));
    }

    public static TheoryData<string, DiskGuestOptions> BadOptions => new()
    {
        { "chunk 0", Simple with { ChunkSectors = 0 } },
        { "chunk 257", Simple with { ChunkSectors = 257 } },
        { "multiple 3", Simple with { PioMultiple = 3 } },
        { "multiple 256", Simple with { PioMultiple = 256 } },
        { "too many ops", Simple with { Operations = Enumerable.Repeat(DiskOp.Flush(), GuestLayout.MaxOps + 1).ToArray() } },
        { "empty read", Simple with { Operations = [DiskOp.ReadVerify(0, 0, 1)] } },
        { "bench qd 0", Simple with { Operations = [DiskOp.BenchSequential(0, 1, 8, 0)] } },
        { "bench qd 65", Simple with { Operations = [DiskOp.BenchSequential(0, 1, 8, 65)] } },
        { "bench buffer", Simple with { Operations = [DiskOp.BenchSequential(0, 1, 4096, 64)] } },
        { "rand seed 0", Simple with { Operations = [DiskOp.BenchRandom(1, 8, 1, 0)] } },
        { "timeout 0", Simple with { TimeoutSeconds = 0 } },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsAreRefusedOnTheHost(string what, DiskGuestOptions options)
    {
        Assert.NotNull(what);
        Assert.ThrowsAny<ArgumentException>(() => DiskGuest.Build(options));
    }

    [Fact]
    public void PatternMatchesItsDefinition()
    {
        var m = new BigInteger(0x9E37_79B9_7F4A_7C15);
        var mask = (BigInteger.One << 64) - 1;
        foreach (ulong address in new ulong[] { 0, 8, 4096, 0x1234_5678_9AB8 })
            foreach (ulong seed in new ulong[] { 0, 1, 0xF111_5EED, ulong.MaxValue })
            {
                ulong v = (ulong)(new BigInteger(address ^ seed) * m & mask);
                Assert.Equal(v ^ (v >> 32), DiskPattern.Qword(address, seed));
            }
        byte[] sectors = DiskPattern.Sectors(3, 2, 42);
        Assert.Equal(DiskPattern.Qword(3 * 512 + 1016, 42), BinaryPrimitives.ReadUInt64LittleEndian(sectors.AsSpan(1016)));
    }

    [Fact]
    public void EarlyCodeAvoidsWhatThisHostCannotEmulate()
    {
        // Real- and protected-mode code is emulated here: no int n, iretd or 32-bit x87/SSE (host-kvm.md).
        byte[] image = DiskGuest.Build(Simple);
        foreach (var (bitness, start, length) in new[] { (16, GuestLayout.Entry16, 0x100), (32, GuestLayout.Code32, 0x200) })
        {
            var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(image, Offset(start), length), start);
            ulong end = start + (ulong)length;
            while (decoder.IP < end)
            {
                decoder.Decode(out Instruction instr);
                if (instr.Code == Code.Hlt) break;   // the fill after the piece
                Assert.False(instr.IsInvalid, $"invalid instruction at 0x{instr.IP:x}");
                Assert.DoesNotContain(instr.Mnemonic, new[] { Mnemonic.Int, Mnemonic.Int3, Mnemonic.Iretd, Mnemonic.Iret });
            }
        }
    }

    [Fact]
    public void GdtDescriptorsHaveTheirAccessedBitsPreset()
    {
        byte[] image = DiskGuest.Build(Simple);
        for (int i = 1; i < 6; i++)
        {
            ulong d = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(Offset(GuestLayout.GdtAddress) + i * 8));
            Assert.True((d & (1UL << 40)) != 0, $"descriptor {i} would be written by the CPU (ROM)");
        }
    }

    [Fact]
    public void CommandLinesNameTheDiskTheWayEachVmmWantsIt()
    {
        var virtio = new DiskAttachment("/x/d.img", DiskInterface.Virtio, ReadOnly: true, CacheNone: true);
        var ide = new DiskAttachment("/x/d,1.img", DiskInterface.IdeDma);
        Assert.Equal(["--firmware", "g.bin", "--memory", "512M", "--serial", "stdio", "--disk", "/x/d.img,if=virtio,readonly=on,cache=none"],
            GuestRun.Csvmm("g.bin", virtio));
        Assert.Equal(["--firmware", "g.bin", "--memory", "256M", "--serial", "stdio", "--disk", "/x/d,1.img,if=ide"], GuestRun.Csvmm("g.bin", ide, 256));
        IReadOnlyList<string> q = GuestRun.Qemu("g.bin", virtio);
        Assert.Contains("file=/x/d.img,if=none,id=d0,format=raw,cache=none,aio=threads,readonly=on", q);
        Assert.Contains("virtio-blk-pci,drive=d0,disable-legacy=on", q);
        IReadOnlyList<string> qi = GuestRun.Qemu("g.bin", ide);
        Assert.Contains("file=/x/d,,1.img,if=none,id=d0,format=raw,cache=writeback", qi);
        Assert.Contains("ide-hd,drive=d0,bus=ide.0,unit=0", qi);
    }
}
