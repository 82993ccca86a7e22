using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace Csvmm.Kvm.Tests;

/// <summary>Where a C# binding struct lives in the C headers.</summary>
/// <param name="Type">The C# struct.</param>
/// <param name="CType">The C type every designator in <paramref name="Fields"/> is relative to.</param>
/// <param name="SizeExpression">C expression for the size the C# struct must have.</param>
/// <param name="BaseExpression">C expression for where the C# struct starts inside <paramref name="CType"/> (the exit-union members of kvm_run start at its union).</param>
/// <param name="Fields">C# field name → C member designator (relative to <paramref name="CType"/>).</param>
internal sealed record StructBinding(
    Type Type, string CType, string SizeExpression, string BaseExpression, IReadOnlyDictionary<string, string> Fields)
{
    public string Name => Type.Name;

    /// <summary>
    /// Fixed-buffer fields whose C array has more than one dimension (C# flattens them), mapped to the C
    /// subscripts that reach one scalar element; others use "[0]".
    /// </summary>
    public IReadOnlyDictionary<string, string> ElementSubscripts { get; init; } = new Dictionary<string, string>();

    public string OffsetExpression(string field) => $"offsetof({CType}, {Fields[field]})";

    public string FieldSizeExpression(string field) => $"sizeof({Member(field)})";

    /// <summary>Size of one element of a fixed-buffer field.</summary>
    public string ElementSizeExpression(string field) => $"sizeof({Member(field)}{Subscripts(field)})";

    /// <summary>1 when the C field (or its element type) is a signed integer.</summary>
    public string SignedExpression(string field, bool isArray) =>
        $"((__typeof__({Member(field)}{(isArray ? Subscripts(field) : "")}))-1 < 0)";

    private string Subscripts(string field) => ElementSubscripts.TryGetValue(field, out string? s) ? s : "[0]";

    private string Member(string field) => $"(({CType} *)0)->{Fields[field]}";
}

/// <summary>
/// The explicit map from csvmm's C# bindings (src/Csvmm.Kvm) to the names in &lt;linux/kvm.h&gt;. The tests
/// enumerate the C# side by reflection and fail for anything this map does not cover, so a new struct,
/// field or constant cannot go untested.
/// </summary>
internal static class BindingMap
{
    public static Assembly KvmAssembly => typeof(Kvm).Assembly;

    public static readonly IReadOnlyList<StructBinding> Structs =
    [
        Plain<KvmRegs>("struct kvm_regs",
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"),
        Plain<KvmSegment>("struct kvm_segment",
            "base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable", "padding"),
        Plain<KvmDtable>("struct kvm_dtable", "base", "limit", "padding"),
        Plain<KvmSregs>("struct kvm_sregs",
            "cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt", "gdt", "idt",
            "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base", "interrupt_bitmap"),
        Plain<KvmFpu>("struct kvm_fpu",
            "fpr", "fcw", "fsw", "ftwx", "pad1", "last_opcode", "last_ip", "last_dp", "xmm", "mxcsr", "pad2")
            with { ElementSubscripts = new Dictionary<string, string> { ["fpr"] = "[0][0]", ["xmm"] = "[0][0]" } }, // __u8 fpr[8][16], xmm[16][16]
        Plain<KvmUserspaceMemoryRegion>("struct kvm_userspace_memory_region",
            "slot", "flags", "guest_phys_addr", "memory_size", "userspace_addr"),
        Plain<KvmDirtyLog>("struct kvm_dirty_log", "slot", "padding1", "dirty_bitmap"),
        Plain<KvmCpuidEntry2>("struct kvm_cpuid_entry2",
            "function", "index", "flags", "eax", "ebx", "ecx", "edx", "padding"),
        Plain<KvmCpuid2>("struct kvm_cpuid2", "nent", "padding"),
        Plain<KvmMsrEntry>("struct kvm_msr_entry", "index", "reserved", "data"),
        Plain<KvmMsrs>("struct kvm_msrs", "nmsrs", "pad"),
        Plain<KvmPitConfig>("struct kvm_pit_config", "flags", "pad"),
        Plain<KvmIrqLevel>("struct kvm_irq_level", "irq", "level"),
        Plain<KvmIoeventfd>("struct kvm_ioeventfd", "datamatch", "addr", "len", "fd", "flags", "pad"),
        Plain<KvmIrqfd>("struct kvm_irqfd", "fd", "gsi", "flags", "resamplefd", "pad"),
        Mapped<KvmIrqRoutingEntry>("struct kvm_irq_routing_entry",
            ("gsi", "gsi"), ("type", "type"), ("flags", "flags"), ("pad", "pad"), ("u", "u.pad")),
        Plain<KvmIrqRouting>("struct kvm_irq_routing", "nr", "flags"),
        Plain<KvmEnableCap>("struct kvm_enable_cap", "cap", "flags", "args", "pad"),
        Plain<KvmLapicState>("struct kvm_lapic_state", "regs"),
        Plain<KvmMpState>("struct kvm_mp_state", "mp_state"),
        Mapped<KvmVcpuEvents>("struct kvm_vcpu_events",
            ("exception_injected", "exception.injected"),
            ("exception_nr", "exception.nr"),
            ("exception_has_error_code", "exception.has_error_code"),
            ("exception_pending", "exception.pending"),
            ("exception_error_code", "exception.error_code"),
            ("interrupt_injected", "interrupt.injected"),
            ("interrupt_nr", "interrupt.nr"),
            ("interrupt_soft", "interrupt.soft"),
            ("interrupt_shadow", "interrupt.shadow"),
            ("nmi_injected", "nmi.injected"),
            ("nmi_pending", "nmi.pending"),
            ("nmi_masked", "nmi.masked"),
            ("nmi_pad", "nmi.pad"),
            ("sipi_vector", "sipi_vector"),
            ("flags", "flags"),
            ("smi_smm", "smi.smm"),
            ("smi_pending", "smi.pending"),
            ("smi_smm_inside_nmi", "smi.smm_inside_nmi"),
            ("smi_latched_init", "smi.latched_init"),
            ("triple_fault_pending", "triple_fault.pending"),
            ("reserved", "reserved"),
            ("exception_has_payload", "exception_has_payload"),
            ("exception_payload", "exception_payload")),
        Plain<KvmSyncRegs>("struct kvm_sync_regs", "regs", "sregs", "events"),
        Plain<KvmXsave>("struct kvm_xsave", "region"),
        Plain<KvmXcrs>("struct kvm_xcrs", "nr_xcrs", "flags", "xcrs", "padding")
            with { ElementSubscripts = new Dictionary<string, string> { ["xcrs"] = "[0].xcr" } }, // struct kvm_xcr xcrs[16], as u32 words
        Plain<KvmDebugregs>("struct kvm_debugregs", "db", "dr6", "dr7", "flags", "reserved"),
        Plain<KvmIrqchip>("struct kvm_irqchip", "chip_id", "pad", "chip")
            with { ElementSubscripts = new Dictionary<string, string> { ["chip"] = ".pic.last_irr" } }, // the 512-byte union, as bytes
        Plain<KvmPitState2>("struct kvm_pit_state2", "channels", "flags", "reserved")
            with { ElementSubscripts = new Dictionary<string, string> { ["channels"] = "[0].count_latched" } }, // 3 x kvm_pit_channel_state, as bytes
        Plain<KvmClockData>("struct kvm_clock_data", "clock", "flags", "pad0", "realtime", "host_tsc", "pad"),
        // The C# header is the part of struct kvm_run before the exit union (whose first member is padding[256]).
        new StructBinding(typeof(KvmRunHeader), "struct kvm_run", "offsetof(struct kvm_run, padding)", "0",
            Same("request_interrupt_window", "immediate_exit", "padding1", "exit_reason",
                "ready_for_interrupt_injection", "if_flag", "flags", "cr8", "apic_base")),
        ExitMember<KvmRunIo>("io", "direction", "size", "port", "count", "data_offset"),
        ExitMember<KvmRunMmio>("mmio", "phys_addr", "data", "len", "is_write"),
        ExitMember<KvmRunInternal>("internal", "suberror", "ndata", "data"),
        ExitMember<KvmRunEmulationFailure>("emulation_failure", "suberror", "ndata", "flags", "insn_size", "insn_bytes"),
        ExitMember<KvmRunFailEntry>("fail_entry", "hardware_entry_failure_reason", "cpu"),
        ExitMember<KvmRunSystemEvent>("system_event", "type", "ndata", "data"),
    ];

    /// <summary>Every public constant of the Csvmm.Kvm assembly ("Type.Name") → the C expression it must equal.</summary>
    public static readonly IReadOnlyDictionary<string, string> Constants = new Dictionary<string, string>
    {
        ["Ioctl.None"] = "_IOC_NONE",
        ["Ioctl.Write"] = "_IOC_WRITE",
        ["Ioctl.Read"] = "_IOC_READ",
        ["Ioctl.KvmType"] = "KVMIO",
        ["Kvm.ExpectedApiVersion"] = "KVM_API_VERSION",
        ["KvmUserspaceMemoryRegion.FlagLogDirtyPages"] = "KVM_MEM_LOG_DIRTY_PAGES",
        ["KvmUserspaceMemoryRegion.FlagReadonly"] = "KVM_MEM_READONLY",
        ["KvmCpuidEntry2.FlagSignificantIndex"] = "KVM_CPUID_FLAG_SIGNIFCANT_INDEX", // sic: the kernel's spelling
        ["KvmPitConfig.FlagSpeakerDummy"] = "KVM_PIT_SPEAKER_DUMMY",
        ["KvmIoeventfd.FlagDatamatch"] = "KVM_IOEVENTFD_FLAG_DATAMATCH",
        ["KvmIoeventfd.FlagPio"] = "KVM_IOEVENTFD_FLAG_PIO",
        ["KvmIoeventfd.FlagDeassign"] = "KVM_IOEVENTFD_FLAG_DEASSIGN",
        ["KvmIrqfd.FlagDeassign"] = "KVM_IRQFD_FLAG_DEASSIGN",
        ["KvmRunEmulationFailure.SuberrorEmulation"] = "KVM_INTERNAL_ERROR_EMULATION",
        ["KvmRunEmulationFailure.FlagInstructionBytes"] = "KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES",
        ["KvmRunEmulationFailure.MaxInstructionBytes"] = "sizeof(((struct kvm_run *)0)->emulation_failure.insn_bytes)",
        ["KvmIrqRoutingEntry.TypeIrqchip"] = "KVM_IRQ_ROUTING_IRQCHIP",
        ["KvmIrqRoutingEntry.TypeMsi"] = "KVM_IRQ_ROUTING_MSI",
        ["KvmIrqRoutingEntry.IrqchipPicMaster"] = "KVM_IRQCHIP_PIC_MASTER",
        ["KvmIrqRoutingEntry.IrqchipPicSlave"] = "KVM_IRQCHIP_PIC_SLAVE",
        ["KvmIrqRoutingEntry.IrqchipIoapic"] = "KVM_IRQCHIP_IOAPIC",
        ["KvmIrqfd.FlagResample"] = "KVM_IRQFD_FLAG_RESAMPLE",
        ["KvmMpState.Runnable"] = "KVM_MP_STATE_RUNNABLE",
        ["KvmMpState.Uninitialized"] = "KVM_MP_STATE_UNINITIALIZED",
        ["KvmMpState.InitReceived"] = "KVM_MP_STATE_INIT_RECEIVED",
        ["KvmMpState.Halted"] = "KVM_MP_STATE_HALTED",
        ["KvmMpState.SipiReceived"] = "KVM_MP_STATE_SIPI_RECEIVED",
        ["KvmRunIo.In"] = "KVM_EXIT_IO_IN",
        ["KvmRunIo.Out"] = "KVM_EXIT_IO_OUT",
        ["KvmRunSystemEvent.Shutdown"] = "KVM_SYSTEM_EVENT_SHUTDOWN",
        ["KvmRunSystemEvent.Reset"] = "KVM_SYSTEM_EVENT_RESET",
        ["KvmRunSystemEvent.Crash"] = "KVM_SYSTEM_EVENT_CRASH",
        ["KvmXcrs.MaxXcrs"] = "KVM_MAX_XCRS",
        ["KvmRunLayout.ExitUnion"] = "offsetof(struct kvm_run, padding)",
        ["KvmRunLayout.ExitUnionSize"] = "sizeof(((struct kvm_run *)0)->padding)",
        ["KvmRunLayout.KvmValidRegs"] = "offsetof(struct kvm_run, kvm_valid_regs)",
        ["KvmRunLayout.KvmDirtyRegs"] = "offsetof(struct kvm_run, kvm_dirty_regs)",
        ["KvmRunLayout.SyncRegs"] = "offsetof(struct kvm_run, s.regs)",
        ["KvmSyncRegs.Regs"] = "KVM_SYNC_X86_REGS",
        ["KvmSyncRegs.Sregs"] = "KVM_SYNC_X86_SREGS",
        ["KvmSyncRegs.Events"] = "KVM_SYNC_X86_EVENTS",
        ["VcpuKick.Signal"] = "SIGUSR2",
    };

    /// <summary>C# member names the PascalCase → UPPER_SNAKE rule gets wrong ("Type.Name" → full C macro). None needed today.</summary>
    public static readonly IReadOnlyDictionary<string, string> MacroOverrides = new Dictionary<string, string>();

    /// <summary>Every KvmIoctl member → its KVM_* request macro.</summary>
    public static IEnumerable<(string CSharp, uint Value, string Macro)> Ioctls =>
        typeof(KvmIoctl).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => ($"KvmIoctl.{f.Name}", (uint)f.GetValue(null)!, MacroFor("KVM_", typeof(KvmIoctl), f.Name)));

    /// <summary>Every member of <typeparamref name="TEnum"/> → the macro <paramref name="prefix"/> + UPPER_SNAKE(name).</summary>
    public static IEnumerable<(string CSharp, long Value, string Macro)> EnumMembers<TEnum>(string prefix) where TEnum : struct, Enum =>
        Enum.GetValues<TEnum>().Select(v =>
            ($"{typeof(TEnum).Name}.{v}", Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture),
                MacroFor(prefix, typeof(TEnum), v.ToString())));

    public static string MacroFor(string prefix, Type owner, string member) =>
        MacroOverrides.TryGetValue($"{owner.Name}.{member}", out string? macro) ? macro : prefix + UpperSnake(member);

    /// <summary>PascalCase → UPPER_SNAKE: an underscore goes before each capital that follows a lower-case letter or digit (SetCpuid2 → SET_CPUID2, X86Rdmsr → X86_RDMSR).</summary>
    public static string UpperSnake(string pascal)
    {
        var sb = new StringBuilder(pascal.Length + 8);
        for (int i = 0; i < pascal.Length; i++)
        {
            char c = pascal[i];
            if (i > 0 && char.IsUpper(c) && (char.IsLower(pascal[i - 1]) || char.IsDigit(pascal[i - 1])))
                sb.Append('_');
            sb.Append(char.ToUpperInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>The binding structs of Csvmm.Kvm: its public, non-enum, non-ref value types (not the compiler's fixed-buffer helpers).</summary>
    public static IEnumerable<Type> CSharpBindingStructs =>
        KvmAssembly.GetTypes().Where(t => t.IsVisible && t.IsValueType && !t.IsEnum && !t.IsByRefLike
                                          && !t.IsDefined(typeof(CompilerGeneratedAttribute), inherit: false));

    /// <summary>Every public constant of the Csvmm.Kvm assembly, keyed "Type.Name".</summary>
    public static IEnumerable<(string Key, long Value)> CSharpConstants =>
        KvmAssembly.GetTypes()
            .Where(t => t.IsVisible && !t.IsEnum && !t.IsDefined(typeof(CompilerGeneratedAttribute), inherit: false))
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly)
                .Where(f => f.IsLiteral)
                .Select(f => ($"{t.Name}.{f.Name}", Convert.ToInt64(f.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture))));

    public static FieldInfo[] PublicInstanceFields(Type t) => t.GetFields(BindingFlags.Public | BindingFlags.Instance);

    /// <summary>Everything any test asks the C compiler, evaluated in one gcc run.</summary>
    public static IReadOnlyList<CQuery> AllQueries()
    {
        var queries = new List<CQuery>();
        foreach (StructBinding s in Structs)
        {
            queries.Add(new(s.SizeExpression, false));
            queries.Add(new(s.BaseExpression, false));
            foreach (FieldInfo f in PublicInstanceFields(s.Type))
            {
                if (!s.Fields.ContainsKey(f.Name)) continue; // reported by the coverage test, not by a compile error
                FixedBufferAttribute? fixedBuffer = f.GetCustomAttribute<FixedBufferAttribute>();
                queries.Add(new(s.OffsetExpression(f.Name), false));
                queries.Add(new(s.FieldSizeExpression(f.Name), false));
                if (fixedBuffer is not null) queries.Add(new(s.ElementSizeExpression(f.Name), false));
                if (fixedBuffer is not null || f.FieldType.IsPrimitive)
                    queries.Add(new(s.SignedExpression(f.Name, fixedBuffer is not null), false));
            }
        }
        queries.Add(new("sizeof(((struct kvm_cpuid2 *)0)->entries[0])", false));
        queries.Add(new("offsetof(struct kvm_cpuid2, entries)", false));
        queries.Add(new("sizeof(((struct kvm_msrs *)0)->entries[0])", false));
        queries.Add(new("offsetof(struct kvm_msrs, entries)", false));
        foreach (string c in Constants.Values) queries.Add(new(c, IsIdentifier(c)));
        foreach (var i in Ioctls) queries.Add(new(i.Macro, true));
        foreach (var e in EnumMembers<KvmCap>("KVM_CAP_")) queries.Add(new(e.Macro, true));
        foreach (var e in EnumMembers<KvmExitReason>("KVM_EXIT_")) queries.Add(new(e.Macro, true));
        return queries.Distinct().ToList();
    }

    private static bool IsIdentifier(string s) => s.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static StructBinding Plain<T>(string cType, params string[] fields) where T : struct =>
        new(typeof(T), cType, $"sizeof({cType})", "0", Same(fields));

    private static StructBinding Mapped<T>(string cType, params (string CSharp, string C)[] fields) where T : struct =>
        new(typeof(T), cType, $"sizeof({cType})", "0", fields.ToDictionary(f => f.CSharp, f => f.C));

    /// <summary>A member of kvm_run's exit union: C designators are <c>member.field</c> inside struct kvm_run.</summary>
    private static StructBinding ExitMember<T>(string member, params string[] fields) where T : struct =>
        new(typeof(T), "struct kvm_run", $"sizeof(((struct kvm_run *)0)->{member})", $"offsetof(struct kvm_run, {member})",
            fields.ToDictionary(f => f, f => $"{member}.{f}"));

    private static Dictionary<string, string> Same(params string[] fields) => fields.ToDictionary(f => f, f => f);
}

/// <summary>The C facts for <see cref="BindingMap"/>, computed once per test run (one gcc invocation).</summary>
internal static class Header
{
    private static readonly Lazy<CFacts> s_facts = new(() => CProbe.Evaluate(BindingMap.AllQueries()));

    public static CFacts Facts => s_facts.Value;
}
