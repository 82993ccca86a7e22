using System.Diagnostics;
using System.Text.RegularExpressions;
using Csvmm.Acpi;
using static Csvmm.Acpi.Tests.GuestAcpi;

using Csvmm.Boot;

namespace Csvmm.Acpi.Tests;

/// <summary>
/// An independent oracle: ACPICA's own tools (Debian acpica-tools) read csvmm's tables. iasl disassembles every
/// table and recompiles the DSDT; acpiexec loads DSDT + FADT + MADT into the same ACPICA interpreter Linux uses and
/// evaluates _PRT, _CRS and \_S5. Skipped when the tools are not installed.
/// </summary>
public sealed partial class AcpicaOracleTests : IDisposable
{
    private const int Cpus = 8;
    private const int Slots = 6;
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-acpi-").FullName;
    private readonly Dictionary<string, (ulong Address, byte[] Bytes)> _tables;

    public AcpicaOracleTests()
    {
        using var memory = AcpiTestPlatform.LowMemory();
        var image = AcpiTables.Write(memory, Layout.AcpiStart, Layout.AcpiMaxSize, AcpiTestPlatform.Config(Cpus, Slots));
        _tables = new GuestAcpi(memory).All(image.Rsdp);
        File.WriteAllBytes(Path.Combine(_dir, "dsdt.aml"), _tables["DSDT"].Bytes);
        File.WriteAllBytes(Path.Combine(_dir, "facp.dat"), _tables["FACP"].Bytes);
        File.WriteAllBytes(Path.Combine(_dir, "apic.dat"), _tables["APIC"].Bytes);
        File.WriteAllBytes(Path.Combine(_dir, "xsdt.dat"), _tables["XSDT"].Bytes);
        File.WriteAllBytes(Path.Combine(_dir, "facs.dat"), _tables["FACS"].Bytes);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"(?i)warning|error|incorrect|exception")]
    private static partial Regex Complaint();

    [SkippableFact]
    public void Iasl_disassembles_the_dsdt_without_complaint()
    {
        string dsl = Disassemble("dsdt.aml");
        foreach (string expected in new[] { @"Name (\_S5, Package (0x04)", "0x05", "Device (PCI0)", "EisaId (\"PNP0A03\")",
                     "Name (_PRT, Package (0x18)", "0x0005FFFF", "Device (COM1)", "EisaId (\"PNP0501\")", "IRQNoFlags ()" })
            Assert.Contains(expected, dsl);
        Assert.DoesNotContain("While", dsl);
        Assert.DoesNotContain("Method", dsl);
    }

    [SkippableFact]
    public void Iasl_recompiles_the_disassembled_dsdt_to_the_same_aml()
    {
        Disassemble("dsdt.aml");
        var (exit, output) = Run("iasl", "-oa", "-p", "recompiled", "dsdt.dsl");   // -oa: no optimizations
        Assert.True(exit == 0, output);
        Assert.Contains("0 Errors, 0 Warnings, 0 Remarks", output);

        var ours = _tables["DSDT"].Bytes.AsSpan(36);
        var theirs = File.ReadAllBytes(Path.Combine(_dir, "recompiled.aml")).AsSpan(36); // header names the compiler
        Assert.Equal(ours.Length, theirs.Length);
        for (int i = 0; i < ours.Length; i++)
        {
            // iasl leaves an End Tag's checksum 0 ("always valid"); csvmm computes it. Nothing else may differ.
            bool endTagChecksum = i > 0 && ours[i - 1] == 0x79 && theirs[i - 1] == 0x79 && theirs[i] == 0;
            Assert.True(ours[i] == theirs[i] || endTagChecksum, $"DSDT AML differs at offset {36 + i}: 0x{ours[i]:x2} vs 0x{theirs[i]:x2}");
        }
    }

    [SkippableFact]
    public void Iasl_decodes_the_fadt_fields()
    {
        string dsl = Disassemble("facp.dat");
        ulong dsdt = _tables["DSDT"].Address, facs = _tables["FACS"].Address;
        foreach (string expected in new[]
                 {
                     "Revision : 06", "FADT Minor Revision : 03", $"FACS Address : {facs:X8}", $"DSDT Address : {dsdt:X16}",
                     "SCI Interrupt : 0009", "PM1A Event Block Address : 00000600", "PM1A Control Block Address : 00000604",
                     "PM Timer Block Address : 00000608", "PM1 Event Block Length : 04", "PM1 Control Block Length : 02",
                     "PM Timer Block Length : 04", "8042 Present on ports 60/64 (V2) : 1", "VGA Not Present (V4) : 1",
                     "Reset Register Supported (V2) : 1", "Control Method Power Button (V1) : 1", "Address : 0000000000000CF9",
                     "Value to cause reset : 06", "Hypervisor ID : 0000004D4D565343",
                 })
            Assert.Contains(expected, Squeeze(dsl));
    }

    [SkippableFact]
    public void Iasl_decodes_the_madt_xsdt_and_facs()
    {
        string madt = Squeeze(Disassemble("apic.dat"));
        Assert.Equal(Cpus, Regex.Count(madt, @"Subtable Type : 00 \[Processor Local APIC\]"));
        Assert.Contains($"I/O Apic ID : {Cpus:X2}", madt);
        Assert.Equal(2, Regex.Count(madt, @"\[Interrupt Source Override\]"));
        Assert.Contains("Local Apic Address : FEE00000", madt);
        Assert.Contains("Interrupt Input LINT : 01", madt);

        string xsdt = Squeeze(Disassemble("xsdt.dat"));
        Assert.Contains($"ACPI Table Address 0 : {_tables["FACP"].Address:X16}", xsdt);
        Assert.Contains($"ACPI Table Address 1 : {_tables["APIC"].Address:X16}", xsdt);

        string facs = Squeeze(Disassemble("facs.dat"));
        Assert.Contains("Length : 00000040", facs);
        Assert.Contains("Version : 02", facs);
    }

    [SkippableFact]
    public void Acpiexec_loads_the_tables_and_evaluates_prt_crs_and_s5()
    {
        var (exit, output) = Run("acpiexec", "-b", @"evaluate \_S5; resources \_SB.PCI0; resources \_SB.COM1",
            "dsdt.aml", "facp.dat", "apic.dat");
        Assert.True(exit == 0, output);
        // ACPICA's own diagnostics must be silent. (acpiexec's self-test lines, "Unexpected AE_BAD_ADDRESS from ...",
        // probe the PM2 and GPE blocks csvmm deliberately does not have; they are not ACPICA diagnostics.)
        Assert.DoesNotMatch(@"(ACPI|Firmware) (Warning|Error|Exception)", output);
        Assert.Contains("ACPI: FACP", output);
        Assert.Matches(@"\[Package\] Contains 4 Elements:\s+\[Integer\] = 0+5\s+\[Integer\] = 0+5\s+\[Integer\] = 0+\s+\[Integer\] = 0+\s", output);

        // acpi_get_irq_routing_table(): what Linux's PCI interrupt code reads.
        var prt = PrtEntry().Matches(output)
            .Select(m => (Convert.ToUInt64(m.Groups[1].Value, 16), Convert.ToUInt64(m.Groups[2].Value, 16), Convert.ToUInt64(m.Groups[3].Value, 16)))
            .ToArray();
        var expected = Enumerable.Range(0, Slots * 4)
            .Select(i => (((ulong)(i / 4) << 16) | 0xFFFF, (ulong)(i % 4), 16 + (ulong)((i / 4 + i % 4) % 4)))
            .ToArray();
        Assert.Equal(expected, prt);

        // acpi_get_current_resources() on PCI0 and COM1: what Linux's PCI root and PnP code read.
        string text = Regex.Replace(output, @"\s+", " ");
        foreach (string fragment in new[]
                 {
                     "Resource Type : Bus Number Range", "Address Minimum : 0000 Address Maximum : 00FF",
                     "Address Minimum : 0000 Address Maximum : 0CF7", "Address Minimum : 0D00 Address Maximum : FFFF",
                     "Address Minimum : 0CF8 Address Maximum : 0CF8 Alignment : 01 Address Length : 08",
                     "Address Minimum : C0000000 Address Maximum : FEBFFFFF Translation Offset : 00000000 Address Length : 3EC00000",
                     "Address Minimum : 03F8 Address Maximum : 03F8 Alignment : 01 Address Length : 08",
                     "Triggering : Edge Polarity : ActiveHigh Sharing : Exclusive Interrupt Count : 01 Interrupt List : 4",
                 })
            Assert.Contains(fragment, text);
        // acpiexec re-encodes each list and compares: ACPICA writes End Tag checksums as 0 where csvmm writes the real
        // checksum, so the End Tag (type 0x78) is the only descriptor allowed to differ.
        Assert.All(Regex.Matches(output, @"Data mismatch in descriptor \[\d+\] type ([0-9A-F]{2})"),
            m => Assert.Equal("78", m.Groups[1].Value));
    }

    [GeneratedRegex(@"Address : ([0-9A-F]+)\s+Pin : ([0-9A-F]+)\s+Source : \[NULL NAMESTRING\]\s+Source Index : ([0-9A-F]+)")]
    private static partial Regex PrtEntry();

    /// <summary>Runs iasl -d on a file in the temp directory; returns the .dsl text.</summary>
    private string Disassemble(string file)
    {
        var (exit, output) = Run("iasl", "-d", file);
        Assert.True(exit == 0, output);
        Assert.DoesNotMatch(Complaint(), output);
        string dsl = File.ReadAllText(Path.Combine(_dir, Path.ChangeExtension(file, ".dsl")));
        Assert.DoesNotMatch(Complaint(), dsl);
        return dsl;
    }

    /// <summary>Collapses runs of spaces so "Field   : value" compares as "Field : value".</summary>
    private static string Squeeze(string text) => Regex.Replace(text, " {2,}", " ");

    private (int Exit, string Output) Run(string tool, params string[] args)
    {
        string? path = FindOnPath(tool);
        Skip.If(path is null, $"{tool} is not on PATH (Debian: apt-get install acpica-tools)");
        var psi = new ProcessStartInfo(path!) { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(30_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{tool} did not finish in 30 s");
        }
        return (p.ExitCode, stdout + stderr.Result);
    }

    private static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool))
            .FirstOrDefault(File.Exists);
}
