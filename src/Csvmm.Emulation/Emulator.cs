using Iced.Intel;

namespace Csvmm.Emulation;

/// <summary>What an emulation did.</summary>
public enum EmulationStatus
{
    /// <summary>The instruction was carried out: write the state back and resume.</summary>
    Completed,
    /// <summary>The instruction raised an exception: inject <see cref="EmulationOutcome.Fault"/>; RIP still names the instruction.</summary>
    Fault,
    /// <summary>A software interrupt (INT n, INT3, INTO): inject vector <see cref="EmulationOutcome.Vector"/> as an interrupt; RIP is past the instruction (its return address).</summary>
    SoftwareInterrupt,
    /// <summary>Not an instruction this emulator carries out (or its operands are not RAM): the VM stops with the crash report.</summary>
    Unsupported,
}

/// <summary>The result of one emulation.</summary>
public readonly record struct EmulationOutcome(EmulationStatus Status, Mnemonic Mnemonic, GuestFault Fault = default, byte Vector = 0, string? Reason = null)
{
    public static EmulationOutcome Done(Mnemonic m) => new(EmulationStatus.Completed, m);
    public static EmulationOutcome Raise(Mnemonic m, GuestFault fault) =>
        fault == GuestAccess.NotRam ? new(EmulationStatus.Unsupported, m, Reason: "an operand is not in guest RAM") : new(EmulationStatus.Fault, m, fault);
    public static EmulationOutcome Interrupt(Mnemonic m, byte vector) => new(EmulationStatus.SoftwareInterrupt, m, Vector: vector);
    public static EmulationOutcome NotSupported(Mnemonic m, string reason) => new(EmulationStatus.Unsupported, m, Reason: reason);
}

/// <summary>What the host provides besides registers and memory: the TSC, MSRs, XCRs and CPU features the guest sees.</summary>
public interface IEmulationHost
{
    /// <summary>The guest's TSC now.</summary>
    ulong ReadTsc();

    /// <summary>IA32_TSC_AUX (MSR 0xC0000103) of this vCPU.</summary>
    ulong TscAux { get; }

    /// <summary>XCR0 of this vCPU.</summary>
    ulong Xcr0 { get; }
}

/// <summary>
/// Carries out, in userspace, the instructions KVM's emulator gives up on (KVM_EXIT_INTERNAL_ERROR, emulation
/// suberror): decodes them with Iced in the vCPU's mode and executes the ones in <see cref="InstructionTable"/> with
/// the architectural semantics — results, flags as the SDM defines them (undefined flags are left unchanged),
/// and the faults the real instruction raises. Counts every kind it runs. Not thread-safe: one per vCPU.
/// </summary>
public sealed class Emulator
{
    private readonly InstructionTable _table;
    private readonly long[] _counts;

    public Emulator() : this(InstructionTable.Default) { }

    /// <summary>The instruction's bytes (at most 15), read by the decoders: one buffer, no allocation per instruction.</summary>
    private sealed class InstructionBytes : CodeReader
    {
        public readonly byte[] Buffer = new byte[15];
        private int _position, _length;

        public void Reset(int length)
        {
            _position = 0;
            _length = length;
        }

        public override int ReadByte() => _position < _length ? Buffer[_position++] : -1;
    }

    private readonly InstructionBytes _reader = new();
    private GuestAccess? _access;
    private readonly Decoder _decoder16, _decoder32, _decoder64;

    public Emulator(InstructionTable table)
    {
        _decoder16 = Decoder.Create(16, _reader, 0, DecoderOptions.None);
        _decoder32 = Decoder.Create(32, _reader, 0, DecoderOptions.None);
        _decoder64 = Decoder.Create(64, _reader, 0, DecoderOptions.None);
        _table = table;
        _counts = new long[table.Count];
    }

    /// <summary>The instructions this emulator carries out.</summary>
    public InstructionTable Table => _table;

    /// <summary>How many of each kind completed (or raised their fault), by table entry name; zero counts left out.</summary>
    public IReadOnlyList<(string Name, long Count)> Counts()
    {
        var list = new List<(string, long)>();
        for (int i = 0; i < _counts.Length; i++)
            if (_counts[i] != 0) list.Add((_table.NameOf(i), _counts[i]));
        return list;
    }

    /// <summary>Every emulated instruction so far.</summary>
    public long Total { get; private set; }

    /// <summary>
    /// Emulates the instruction at CS:RIP. <paramref name="bytes"/>: the instruction bytes KVM reported (may be empty: they
    /// are then fetched from guest memory through the current paging mode).
    /// </summary>
    public EmulationOutcome Step(CpuState cpu, IGuestPhysicalMemory memory, IEmulationHost host, ReadOnlySpan<byte> bytes)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(host);
        GuestAccess access = _access is { } a && a.IsFor(cpu, memory) ? a : _access = new GuestAccess(cpu, memory);
        byte[] buffer = _reader.Buffer;
        int available;
        GuestFault? fetchFault = null;
        if (bytes.IsEmpty)
        {
            available = Fetch(cpu, access, buffer, out fetchFault);
            if (available == 0) return EmulationOutcome.Raise(Mnemonic.INVALID, fetchFault!.Value);
        }
        else
        {
            available = Math.Min(bytes.Length, buffer.Length);
            bytes[..available].CopyTo(buffer);
        }
        bytes = buffer.AsSpan(0, available);
        Decoder decoder = cpu.Bitness switch { 16 => _decoder16, 32 => _decoder32, _ => _decoder64 };
        _reader.Reset(available);
        decoder.IP = cpu.Rip;
        decoder.Decode(out Instruction instruction);
        // An instruction that runs into a page that cannot be fetched raises that page's fault, as the processor would.
        if (fetchFault is { } ff && (instruction.IsInvalid || instruction.Length > available))
            return EmulationOutcome.Raise(Mnemonic.INVALID, ff);
        if (instruction.IsInvalid)
            return EmulationOutcome.NotSupported(Mnemonic.INVALID, $"cannot decode {Convert.ToHexString(bytes)} ({decoder.LastError})");
        int slot = _table.Find(instruction.Code);
        if (slot < 0)
            return EmulationOutcome.NotSupported(instruction.Mnemonic, $"{instruction} is not an instruction csvmm emulates");
        var context = new InstructionContext(cpu, access, host, instruction);
        EmulationOutcome outcome = _table.Handler(slot)(ref context);
        if (outcome.Status != EmulationStatus.Unsupported)
        {
            _counts[slot]++;
            Total++;
        }
        return outcome;
    }

    /// <summary>Reads up to 15 bytes at CS:RIP; returns how many could be read, and the fault that stopped it short.</summary>
    private static int Fetch(CpuState cpu, GuestAccess access, Span<byte> buffer, out GuestFault? fault)
    {
        fault = null;
        for (int i = 0; i < buffer.Length; i++)
        {
            fault = access.ToLinear(SegmentName.Cs, cpu.Rip + (ulong)i, 1, AccessKind.Fetch, out ulong linear)
                ?? access.ReadLinear(linear, buffer.Slice(i, 1), AccessKind.Fetch, supervisor: false);
            if (fault is not null) return i;
        }
        return buffer.Length;
    }
}
