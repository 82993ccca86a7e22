using System.Buffers.Binary;
using Csvmm.Emulation;
using Iced.Intel;

namespace Csvmm.Emulation.Tests;

/// <summary>Guest RAM for the tests: a byte array from physical 0, with a lock-based 16-byte compare-exchange.</summary>
internal sealed class FakeMemory(int size = 4 << 20) : IGuestPhysicalMemory
{
    public readonly byte[] Bytes = new byte[size];
    private readonly Lock _lock = new();

    public bool TryRead(ulong address, Span<byte> destination)
    {
        if (address > (ulong)Bytes.Length || (ulong)destination.Length > (ulong)Bytes.Length - address) return false;
        Bytes.AsSpan((int)address, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong address, ReadOnlySpan<byte> source)
    {
        if (address > (ulong)Bytes.Length || (ulong)source.Length > (ulong)Bytes.Length - address) return false;
        source.CopyTo(Bytes.AsSpan((int)address));
        return true;
    }

    public bool TryCompareExchange128(ulong address, UInt128 expected, UInt128 desired, out UInt128 previous)
    {
        previous = 0;
        if (address + 16 > (ulong)Bytes.Length) return false;
        lock (_lock)
        {
            previous = BinaryPrimitives.ReadUInt128LittleEndian(Bytes.AsSpan((int)address));
            if (previous == expected) BinaryPrimitives.WriteUInt128LittleEndian(Bytes.AsSpan((int)address), desired);
        }
        return true;
    }

    public ulong U64(ulong address) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes.AsSpan((int)address));
    public void U64(ulong address, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Bytes.AsSpan((int)address), value);
    public uint U32(ulong address) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan((int)address));
    public void U32(ulong address, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Bytes.AsSpan((int)address), value);
    public ushort U16(ulong address) => BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan((int)address));
}

internal sealed class FakeHost : IEmulationHost
{
    public ulong Tsc = 0x1234_5678_9ABC_DEF0;
    public ulong ReadTsc() => Tsc;
    public ulong TscAux { get; set; } = 0xFFFF_FFFF_0000_0007;
    public ulong Xcr0 { get; set; } = 0x0000_0002_0000_0007;
}

/// <summary>A CPU, RAM and host, and the instruction to emulate assembled by Iced at RIP.</summary>
internal sealed class Rig
{
    public readonly CpuState Cpu = new();
    public readonly FakeMemory Memory = new();
    public readonly FakeHost Host = new();
    public readonly Emulator Emulator = new();

    /// <summary>64-bit mode, ring 0, flat segments, paging off (identity) unless a test builds page tables.</summary>
    public static Rig Long64(int cpl = 0)
    {
        var r = new Rig();
        r.Cpu.Cr0 = ControlBits.Cr0Pe | ControlBits.Cr0Pg;
        r.Cpu.Cr4 = ControlBits.Cr4Pae | ControlBits.Cr4Osxsave;
        r.Cpu.Efer = ControlBits.EferLme | ControlBits.EferLma | ControlBits.EferNxe;
        r.Cpu.Cs = Segment.Flat((ushort)(0x08 | cpl), 0xB, db: false, l: true, dpl: (byte)cpl);
        r.Cpu.Ss = r.Cpu.Ds = r.Cpu.Es = r.Cpu.Fs = r.Cpu.Gs = Segment.Flat((ushort)(0x10 | cpl), 0x3, dpl: (byte)cpl);
        r.IdentityMap();
        r.Cpu.Rip = 0x10_0000;
        r.Cpu.Gpr[CpuState.Rsp] = 0x8_0000;
        return r;
    }

    /// <summary>32-bit protected mode, ring 0, flat segments, no paging.</summary>
    public static Rig Protected32()
    {
        var r = new Rig();
        r.Cpu.Cr0 = ControlBits.Cr0Pe;
        r.Cpu.Cs = Segment.Flat(0x08, 0xB);
        r.Cpu.Ss = r.Cpu.Ds = r.Cpu.Es = r.Cpu.Fs = r.Cpu.Gs = Segment.Flat(0x10, 0x3);
        r.Cpu.Rip = 0x10_0000;
        r.Cpu.Gpr[CpuState.Rsp] = 0x8_0000;
        return r;
    }

    /// <summary>Real mode at 0000:7C00.</summary>
    public static Rig Real()
    {
        var r = new Rig();
        r.Cpu.Cs = new Segment { Selector = 0, Base = 0, Limit = 0xFFFF, Type = 0xB, S = true, Present = true };
        r.Cpu.Ss = r.Cpu.Ds = r.Cpu.Es = new Segment { Selector = 0, Base = 0, Limit = 0xFFFF, Type = 0x3, S = true, Present = true };
        r.Cpu.Idt = new DescriptorTable { Base = 0, Limit = 0x3FF };
        r.Cpu.Rip = 0x7C00;
        r.Cpu.Gpr[CpuState.Rsp] = 0x7000;
        return r;
    }

    public const ulong Pml4 = 0x1000, Pdpt = 0x2000, Pd = 0x3000, Pt = 0x4000;

    /// <summary>4-level tables: the first 2 MiB mapped with 4 KiB pages (supervisor, writable), the next 2 MiB as a 2 MiB page.</summary>
    public void IdentityMap(ulong pageFlags = 0x3)
    {
        Cpu.Cr3 = Pml4;
        Memory.U64(Pml4, Pdpt | 0x7);
        Memory.U64(Pdpt, Pd | 0x7);
        Memory.U64(Pd, Pt | 0x7);
        Memory.U64(Pd + 8, 0x20_0000 | 0x83); // 2 MiB page at 2 MiB
        for (ulong i = 0; i < 512; i++) Memory.U64(Pt + i * 8, (i << 12) | pageFlags);
    }

    /// <summary>Sets the flags of the 4 KiB page that maps <paramref name="address"/> (below 2 MiB).</summary>
    public void PageFlags(ulong address, ulong flags) => Memory.U64(Pt + (address >> 12) * 8, (address & ~0xFFFUL) | flags);

    public ulong PteOf(ulong address) => Memory.U64(Pt + (address >> 12) * 8);

    /// <summary>Assembles at RIP (bitness from the CPU's mode), writes the bytes there, and emulates them (fetched from memory or given).</summary>
    public EmulationOutcome Run(Action<Assembler> code, bool fromMemory = false)
    {
        byte[] bytes = Assemble(Cpu.Bitness, Cpu.Rip, code);
        ulong at = Cpu.Cs.Base + Cpu.Rip;
        bytes.CopyTo(Memory.Bytes, (int)at);
        return Emulator.Step(Cpu, Memory, Host, fromMemory ? [] : bytes);
    }

    public static byte[] Assemble(int bitness, ulong ip, Action<Assembler> code)
    {
        var a = new Assembler(bitness);
        code(a);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), ip);
        return stream.ToArray();
    }

    public ulong this[int gpr]
    {
        get => Cpu.Gpr[gpr];
        set => Cpu.Gpr[gpr] = value;
    }
}
