namespace Csvmm.Kvm.Tests;

/// <summary>
/// Every KvmIoctl request number, KvmCap and KvmExitReason value against the macros of the real
/// &lt;linux/kvm.h&gt;. C# names map to macros by <see cref="BindingMap.UpperSnake"/> (plus <see cref="BindingMap.MacroOverrides"/>).
/// </summary>
public sealed class RequestNumberTests
{
    [Fact]
    public void EveryKvmIoctlEqualsItsKvmMacro()
    {
        var ioctls = BindingMap.Ioctls.ToArray();
        Assert.True(ioctls.Length >= 30, $"expected KvmIoctl's request numbers by reflection, found {ioctls.Length}");
        AssertAllMatch(ioctls.Select(i => (i.CSharp, (long)i.Value, i.Macro)), hex: true);
    }

    [Fact]
    public void EveryKvmCapEqualsItsKvmCapMacro() =>
        AssertAllMatch(BindingMap.EnumMembers<KvmCap>("KVM_CAP_"), hex: false);

    [Fact]
    public void EveryKvmExitReasonEqualsItsKvmExitMacro() =>
        AssertAllMatch(BindingMap.EnumMembers<KvmExitReason>("KVM_EXIT_"), hex: false);

    /// <summary>Kvm's "lacks the required capability KVM_CAP_..." message must name a macro that exists.</summary>
    [Fact]
    public void CapabilityNamesInErrorMessagesAreTheKernelsNames()
    {
        foreach (KvmCap cap in Enum.GetValues<KvmCap>())
            Assert.Equal(BindingMap.MacroFor("KVM_CAP_", typeof(KvmCap), cap.ToString()), "KVM_CAP_" + Kvm.CapName(cap));
    }

    [Theory]
    [InlineData("Run", "RUN")]
    [InlineData("SetUserMemoryRegion", "SET_USER_MEMORY_REGION")]
    [InlineData("Irqfd", "IRQFD")]
    [InlineData("Ioeventfd", "IOEVENTFD")]
    [InlineData("SetCpuid2", "SET_CPUID2")]
    [InlineData("CreatePit2", "CREATE_PIT2")]
    [InlineData("GetSregs", "GET_SREGS")]
    [InlineData("X86Rdmsr", "X86_RDMSR")]
    public void NameRuleTurnsPascalCaseIntoUpperSnake(string pascal, string upperSnake) =>
        Assert.Equal(upperSnake, BindingMap.UpperSnake(pascal));

    private static void AssertAllMatch(IEnumerable<(string CSharp, long Value, string Macro)> members, bool hex)
    {
        CFacts c = Header.Facts;
        var errors = new List<string>();
        foreach ((string csharp, long value, string macro) in members)
        {
            if (!c.IsDefined(macro))
                errors.Add($"{csharp}: {macro} is not defined by <linux/kvm.h> (fix the name or add a BindingMap.MacroOverrides entry)");
            else if (c.Value(macro) != value)
                errors.Add(hex
                    ? $"{csharp} = 0x{value:X8}, {macro} = 0x{c.Value(macro):X8}"
                    : $"{csharp} = {value}, {macro} = {c.Value(macro)}");
        }
        Assert.True(errors.Count == 0, string.Join("; ", errors));
    }
}
