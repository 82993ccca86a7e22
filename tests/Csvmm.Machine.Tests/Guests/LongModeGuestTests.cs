using Csvmm.TinyGuests;
using System.Text;
using static Iced.Intel.AssemblerRegisters;

namespace Csvmm.Machine.Tests.Guests;

/// <summary>
/// A guest that gets itself from the reset vector into 64-bit long mode (GDT, protected mode, its own PAE
/// page tables, EFER.LME, paging) and then drives a test MMIO device and a test port device with every access
/// width, string I/O, and reads whose values it writes back. The test checks the exact access sequence.
/// </summary>
[Collection(KvmGuests.Name)]
public sealed class LongModeGuestTests
{
    private const string Mmio = "mmio", Pio = "pio";
    private const ushort StreamPort = GuestCode.TestPort + 1;
    private const string Text = "csvmm";

    /// <summary>What the test MMIO device returns for a read at (offset, size).</summary>
    private static ulong MmioValue(ulong offset, int size) => (offset, size) switch
    {
        (0x20, 8) => 0x0123_4567_89AB_CDEF,
        (0x30, 4) => 0xA5A5_F00D,
        (0x38, 2) => 0x1234,
        (0x3C, 1) => 0x42,
        _ => 0xDEAD,
    };

    [Fact]
    public void LongModeGuestDrivesMmioAndPortDevicesWithEveryWidth()
    {
        var (image, _) = GuestCode.LongModeGuest(a =>
        {
            GuestCode.Print(a, "64");

            // MMIO writes of each width, then reads (values from the device) written back elsewhere.
            a.mov(rbx, GuestCode.TestMmio);
            a.mov(rax, 0x1122_3344_5566_7788);
            a.mov(__qword_ptr[rbx], rax);
            a.mov(__dword_ptr[rbx + 0x08], unchecked((int)0xCAFE_BABE));
            a.mov(__word_ptr[rbx + 0x10], 0xBEEF);
            a.mov(__byte_ptr[rbx + 0x18], 0x5A);
            a.mov(rax, __qword_ptr[rbx + 0x20]);
            a.mov(__qword_ptr[rbx + 0x28], rax);
            a.mov(eax, __dword_ptr[rbx + 0x30]);
            a.mov(__dword_ptr[rbx + 0x34], eax);
            a.movzx(eax, __word_ptr[rbx + 0x38]);
            a.mov(__word_ptr[rbx + 0x3A], ax);
            a.mov(al, __byte_ptr[rbx + 0x3C]);
            a.mov(__byte_ptr[rbx + 0x3D], al);

            // Port I/O: OUT of each width, IN of each width echoed back with OUT.
            a.mov(dx, GuestCode.TestPort);
            a.mov(al, 0x11);
            a.@out(dx, al);
            a.mov(ax, 0x2233);
            a.@out(dx, ax);
            a.mov(eax, 0x4455_6677);
            a.@out(dx, eax);
            a.@in(al, dx);
            a.@out(dx, al);
            a.@in(ax, dx);
            a.@out(dx, ax);
            a.@in(eax, dx);
            a.@out(dx, eax);

            // String I/O: rep outsb of a string in the image, rep insb into RAM and rep outsb of it back,
            // rep outsw of two words.
            a.cld();
            a.mov(esi, GuestCode.Strings);
            a.mov(ecx, Text.Length);
            a.rep.outsb();
            a.mov(dx, StreamPort);
            a.mov(edi, GuestCode.Buffer);
            a.mov(ecx, 4);
            a.rep.insb();
            a.mov(dx, GuestCode.TestPort);
            a.mov(esi, GuestCode.Buffer);
            a.mov(ecx, 4);
            a.rep.outsb();
            a.mov(esi, GuestCode.Strings);
            a.mov(ecx, 2);
            a.rep.outsw();

            GuestCode.PowerOff(a);
        });
        image.AddData(GuestCode.Strings, Encoding.ASCII.GetBytes(Text), "string");
        var log = new AccessLog();
        byte streamNext = 0x30;

        GuestRun run = TinyGuest.Run(image.Build(), extraDevices: vm =>
        {
            vm.MmioBus.Register(GuestCode.TestMmio, 0x1000, new RecordingDevice(Mmio, log, MmioValue), "test MMIO");
            vm.PortBus.Register(GuestCode.TestPort, 2, new RecordingDevice(Pio, log, (offset, size) => (offset, size) switch
            {
                (0, 1) => 0xA1,
                (0, 2) => 0xB2C3,
                (0, 4) => 0xD4E5_F607,
                (1, 1) => streamNext++,
                _ => 0xEE,
            }), "test port");
        });

        Assert.True(run.Outcome.Kind == VmExitKind.PowerOff, run.Describe());
        Assert.Equal("64", run.Serial);
        Access[] expected =
        [
            Access.W(Mmio, 0x00, 8, 0x1122_3344_5566_7788),
            Access.W(Mmio, 0x08, 4, 0xCAFE_BABE),
            Access.W(Mmio, 0x10, 2, 0xBEEF),
            Access.W(Mmio, 0x18, 1, 0x5A),
            Access.R(Mmio, 0x20, 8, 0x0123_4567_89AB_CDEF),
            Access.W(Mmio, 0x28, 8, 0x0123_4567_89AB_CDEF),
            Access.R(Mmio, 0x30, 4, 0xA5A5_F00D),
            Access.W(Mmio, 0x34, 4, 0xA5A5_F00D),
            Access.R(Mmio, 0x38, 2, 0x1234),
            Access.W(Mmio, 0x3A, 2, 0x1234),
            Access.R(Mmio, 0x3C, 1, 0x42),
            Access.W(Mmio, 0x3D, 1, 0x42),
            Access.W(Pio, 0, 1, 0x11),
            Access.W(Pio, 0, 2, 0x2233),
            Access.W(Pio, 0, 4, 0x4455_6677),
            Access.R(Pio, 0, 1, 0xA1),
            Access.W(Pio, 0, 1, 0xA1),
            Access.R(Pio, 0, 2, 0xB2C3),
            Access.W(Pio, 0, 2, 0xB2C3),
            Access.R(Pio, 0, 4, 0xD4E5_F607),
            Access.W(Pio, 0, 4, 0xD4E5_F607),
            .. Text.Select(c => Access.W(Pio, 0, 1, c)),
            .. Enumerable.Range(0x30, 4).Select(v => Access.R(Pio, 1, 1, (ulong)v)),
            .. Enumerable.Range(0x30, 4).Select(v => Access.W(Pio, 0, 1, (ulong)v)),
            Access.W(Pio, 0, 2, 's' << 8 | 'c'),
            Access.W(Pio, 0, 2, 'm' << 8 | 'v'),
        ];
        Assert.Equal(expected, log.Snapshot());
    }
}
