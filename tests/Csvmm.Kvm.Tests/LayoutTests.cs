using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Csvmm.Kvm.Tests;

/// <summary>
/// Proves every C# mirror of a &lt;linux/kvm.h&gt; struct byte for byte: total size, and each field's offset,
/// size, element size and signedness, against what gcc computes from the installed headers.
/// </summary>
public sealed class LayoutTests
{
    /// <summary>Fields whose C# signedness deliberately differs from C (C's plain char is signed on x86).</summary>
    private static readonly HashSet<string> SignednessExceptions =
    [
        "KvmLapicState.regs", // char regs[1024] in C: a raw register page, bytes in C#
    ];

    public static TheoryData<string> StructNames => [.. BindingMap.Structs.Select(s => s.Name)];

    [Fact]
    public void EveryBindingStructOfTheAssemblyIsMapped()
    {
        string[] mapped = BindingMap.Structs.Select(s => s.Name).ToArray();
        string[] unmapped = BindingMap.CSharpBindingStructs.Select(t => t.Name).Except(mapped).Order().ToArray();
        string[] stale = mapped.Except(BindingMap.CSharpBindingStructs.Select(t => t.Name)).ToArray();

        Assert.True(unmapped.Length == 0, $"public structs of Csvmm.Kvm with no C mapping in BindingMap.Structs: {string.Join(", ", unmapped)}");
        Assert.True(stale.Length == 0, $"BindingMap.Structs names types Csvmm.Kvm no longer has: {string.Join(", ", stale)}");
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void EveryPublicFieldHasACMapping(string structName)
    {
        StructBinding s = Binding(structName);
        string[] fields = BindingMap.PublicInstanceFields(s.Type).Select(f => f.Name).ToArray();
        string[] unmapped = fields.Except(s.Fields.Keys).ToArray();
        string[] stale = s.Fields.Keys.Except(fields).ToArray();

        Assert.True(unmapped.Length == 0, $"{structName}: fields with no C designator in BindingMap: {string.Join(", ", unmapped)}");
        Assert.True(stale.Length == 0, $"{structName}: BindingMap maps fields the C# struct does not have: {string.Join(", ", stale)}");
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructMatchesTheHeader(string structName)
    {
        StructBinding s = Binding(structName);
        CFacts c = Header.Facts;
        var errors = new List<string>();

        void Expect(string what, long csharp, long cValue)
        {
            if (csharp != cValue) errors.Add($"{what}: C# {csharp}, C {cValue}");
        }

        long cSize = c.Value(s.SizeExpression);
        Expect("Unsafe.SizeOf", UnsafeSizeOf(s.Type), cSize);
        Expect("Marshal.SizeOf", Marshal.SizeOf(s.Type), cSize);

        long cBase = c.Value(s.BaseExpression);
        foreach (FieldInfo f in BindingMap.PublicInstanceFields(s.Type).Where(f => s.Fields.ContainsKey(f.Name)))
        {
            string name = $"{structName}.{f.Name} ({s.Fields[f.Name]})";
            FixedBufferAttribute? fixedBuffer = f.GetCustomAttribute<FixedBufferAttribute>();
            Type elementType = fixedBuffer?.ElementType ?? f.FieldType;

            Expect($"offset of {name}", Marshal.OffsetOf(s.Type, f.Name).ToInt64(), c.Value(s.OffsetExpression(f.Name)) - cBase);
            Expect($"size of {name}", FieldSize(f, fixedBuffer), c.Value(s.FieldSizeExpression(f.Name)));
            if (fixedBuffer is not null)
                Expect($"element size of {name}", Marshal.SizeOf(elementType), c.Value(s.ElementSizeExpression(f.Name)));
            if (elementType.IsPrimitive && !SignednessExceptions.Contains($"{structName}.{f.Name}"))
                Expect($"signedness (1 = signed) of {name}", IsSigned(elementType) ? 1 : 0,
                    c.Value(s.SignedExpression(f.Name, fixedBuffer is not null)));
        }

        Assert.True(errors.Count == 0, $"{structName} differs from {s.CType}: {string.Join("; ", errors)}");
    }

    [Fact]
    public void VariableLengthHeadersMatchTheirFlexibleArrays()
    {
        CFacts c = Header.Facts;

        // The entries[] of kvm_cpuid2 / kvm_msrs start right after the C# header struct.
        Assert.Equal(c.Value("sizeof(struct kvm_cpuid2)"), Unsafe.SizeOf<KvmCpuid2>());
        Assert.Equal(c.Value("offsetof(struct kvm_cpuid2, entries)"), Unsafe.SizeOf<KvmCpuid2>());
        Assert.Equal(c.Value("sizeof(((struct kvm_cpuid2 *)0)->entries[0])"), Unsafe.SizeOf<KvmCpuidEntry2>());

        Assert.Equal(c.Value("sizeof(struct kvm_msrs)"), Unsafe.SizeOf<KvmMsrs>());
        Assert.Equal(c.Value("offsetof(struct kvm_msrs, entries)"), Unsafe.SizeOf<KvmMsrs>());
        Assert.Equal(c.Value("sizeof(((struct kvm_msrs *)0)->entries[0])"), Unsafe.SizeOf<KvmMsrEntry>());
    }

    [Fact]
    public void ExitUnionMembersStartAtTheUnionAndFitInIt()
    {
        CFacts c = Header.Facts;
        Assert.Equal(KvmRunLayout.ExitUnion, c.Value("offsetof(struct kvm_run, padding)"));
        Assert.Equal(KvmRunLayout.ExitUnion, Unsafe.SizeOf<KvmRunHeader>());

        foreach (StructBinding s in BindingMap.Structs.Where(s => s.BaseExpression != "0"))
        {
            Assert.True(c.Value(s.BaseExpression) == KvmRunLayout.ExitUnion,
                $"{s.Name} ({s.BaseExpression}) does not start at KvmRunLayout.ExitUnion = {KvmRunLayout.ExitUnion}");
            Assert.True(UnsafeSizeOf(s.Type) <= KvmRunLayout.ExitUnionSize,
                $"{s.Name} ({UnsafeSizeOf(s.Type)} bytes) is larger than kvm_run's exit union ({KvmRunLayout.ExitUnionSize})");
        }
    }

    [Fact]
    public void EveryPublicConstantIsMapped()
    {
        string[] csharp = BindingMap.CSharpConstants.Select(k => k.Key).ToArray();
        string[] unmapped = csharp.Except(BindingMap.Constants.Keys).Order().ToArray();
        string[] stale = BindingMap.Constants.Keys.Except(csharp).ToArray();

        Assert.True(unmapped.Length == 0, $"public constants of Csvmm.Kvm with no C expression in BindingMap.Constants: {string.Join(", ", unmapped)}");
        Assert.True(stale.Length == 0, $"BindingMap.Constants names constants Csvmm.Kvm no longer has: {string.Join(", ", stale)}");
    }

    [Fact]
    public void EveryPublicConstantMatchesTheHeader()
    {
        CFacts c = Header.Facts;
        var errors = new List<string>();
        foreach ((string key, long value) in BindingMap.CSharpConstants)
        {
            if (!BindingMap.Constants.TryGetValue(key, out string? expression)) continue; // reported by EveryPublicConstantIsMapped
            if (!c.IsDefined(expression))
                errors.Add($"{key}: {expression} is not defined");
            else if (c.Value(expression) != value)
                errors.Add($"{key} = {value}, {expression} = {c.Value(expression)}");
        }

        Assert.True(errors.Count == 0, $"constants that differ from the C headers: {string.Join("; ", errors)}");
    }

    private static StructBinding Binding(string name) => BindingMap.Structs.Single(s => s.Name == name);

    private static int UnsafeSizeOf(Type t) =>
        (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(t).Invoke(null, null)!;

    private static long FieldSize(FieldInfo f, FixedBufferAttribute? fixedBuffer) =>
        fixedBuffer is null ? UnsafeSizeOf(f.FieldType) : (long)Marshal.SizeOf(fixedBuffer.ElementType) * fixedBuffer.Length;

    private static bool IsSigned(Type t) =>
        t == typeof(sbyte) || t == typeof(short) || t == typeof(int) || t == typeof(long) || t == typeof(nint);
}
