using Iced.Intel;

namespace Csvmm.Emulation;

/// <summary>Carries out one decoded instruction.</summary>
public delegate EmulationOutcome InstructionHandler(ref InstructionContext context);

/// <summary>
/// The instructions csvmm emulates, by Iced <see cref="Code"/>: one line per kind in <see cref="Default"/>, so adding
/// an instruction is a handler and a line. Each entry has a name (how counts are reported) and the codes it covers.
/// </summary>
public sealed class InstructionTable
{
    private readonly Dictionary<Code, int> _byCode = [];
    private readonly List<(string Name, InstructionHandler Handler)> _entries = [];

    /// <summary>The table csvmm uses: the instructions KVM's emulator is known to give up on.</summary>
    public static InstructionTable Default { get; } = new InstructionTable()
        .Add("popcnt", BitCount.Popcnt, Code.Popcnt_r16_rm16, Code.Popcnt_r32_rm32, Code.Popcnt_r64_rm64)
        .Add("lzcnt", BitCount.Lzcnt, Code.Lzcnt_r16_rm16, Code.Lzcnt_r32_rm32, Code.Lzcnt_r64_rm64)
        .Add("tzcnt", BitCount.Tzcnt, Code.Tzcnt_r16_rm16, Code.Tzcnt_r32_rm32, Code.Tzcnt_r64_rm64)
        .Add("andn", BitCount.Andn, Code.VEX_Andn_r32_r32_rm32, Code.VEX_Andn_r64_r64_rm64)
        .Add("movbe", DataMovement.Movbe, Code.Movbe_r16_m16, Code.Movbe_r32_m32, Code.Movbe_r64_m64,
            Code.Movbe_m16_r16, Code.Movbe_m32_r32, Code.Movbe_m64_r64)
        .Add("cmpxchg16b", DataMovement.Cmpxchg16b, Code.Cmpxchg16b_m128)
        .Add("rdtscp", SystemInstructions.Rdtscp, Code.Rdtscp)
        .Add("xgetbv", SystemInstructions.Xgetbv, Code.Xgetbv)
        .Add("clac", SystemInstructions.Clac, Code.Clac)
        .Add("stac", SystemInstructions.Stac, Code.Stac)
        .Add("int3", Interrupts.Int3, Code.Int3)
        .Add("int", Interrupts.IntN, Code.Int_imm8)
        .Add("into", Interrupts.Into, Code.Into)
        .Add("iretd", Interrupts.Iretd, Code.Iretd);

    /// <summary>Adds a kind of instruction.</summary>
    public InstructionTable Add(string name, InstructionHandler handler, params Code[] codes)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(handler);
        int slot = _entries.Count;
        _entries.Add((name, handler));
        foreach (Code code in codes)
            if (!_byCode.TryAdd(code, slot))
                throw new ArgumentException($"{code} is already in the table", nameof(codes));
        return this;
    }

    /// <summary>Number of kinds.</summary>
    public int Count => _entries.Count;

    /// <summary>The names of the kinds, in table order.</summary>
    public IEnumerable<string> Names => _entries.Select(e => e.Name);

    internal int Find(Code code) => _byCode.TryGetValue(code, out int slot) ? slot : -1;

    internal string NameOf(int slot) => _entries[slot].Name;

    internal InstructionHandler Handler(int slot) => _entries[slot].Handler;
}
