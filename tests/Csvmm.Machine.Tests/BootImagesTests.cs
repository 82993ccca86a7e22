using Csvmm.Boot;
using Csvmm.Machine;

namespace Csvmm.Machine.Tests;

/// <summary>The boot files are read and checked before KVM is opened, and kept for every boot of the machine.</summary>
public sealed class BootImagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-bootimages-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string File(string name, byte[] bytes)
    {
        string p = Path.Combine(_dir, name);
        System.IO.File.WriteAllBytes(p, bytes);
        return p;
    }

    [Fact]
    public void A_text_file_as_kernel_is_refused_with_one_line()
    {
        string k = File("vmlinuz", "this is not a kernel\n"u8.ToArray());
        var e = Assert.Throws<BootException>(() => BootImages.Read(new MachineConfig { Kernel = k }));
        Assert.Equal($"{k}: neither a bzImage nor an ELF vmlinux (no HdrS magic at 0x202, no \\x7fELF magic) (it looks like a text file)", e.Message);
    }

    [Fact]
    public void A_firmware_of_the_wrong_size_is_refused()
    {
        string fw = File("bios.bin", new byte[1000]);
        var e = Assert.Throws<BootException>(() => BootImages.Read(new MachineConfig { Firmware = fw }));
        Assert.Equal($"{fw}: firmware is 1000 bytes, not a multiple of 64 KiB", e.Message);
    }

    [Fact]
    public void Nothing_to_boot_is_refused()
    {
        var e = Assert.Throws<BootException>(() => BootImages.Read(new MachineConfig()));
        Assert.Equal("nothing to boot: no kernel and no firmware", e.Message);
    }

    [Fact]
    public void An_initrd_larger_than_guest_ram_is_refused()
    {
        var elf = new byte[64];
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }.CopyTo(elf, 0);
        string k = File("vmlinux", elf), initrd = File("initrd", new byte[2 << 20]);
        var e = Assert.Throws<BootException>(() => BootImages.Read(new MachineConfig { Kernel = k, Initrd = initrd, MemoryBytes = 1 << 20 }));
        Assert.Contains("initrd file is 2 MiB, more than the 1 MiB of guest RAM", e.Message);
    }

    [Fact]
    public void The_bytes_read_are_kept_whatever_happens_to_the_file()
    {
        var image = new byte[64 * 1024];
        image[^16] = 0xF4; // hlt at the reset vector
        string fw = File("bios.bin", image);
        BootImages images = BootImages.Read(new MachineConfig { Firmware = fw });
        System.IO.File.WriteAllBytes(fw, new byte[128 * 1024]); // replaced while the VM runs: a reset must not see it
        Assert.NotNull(images.Firmware);
        Assert.Null(images.Kernel);
        Assert.Equal(64 * 1024, images.Firmware!.File.Length);
        Assert.Equal(0xF4, images.Firmware.File.Bytes.Span[^16]);
    }
}
