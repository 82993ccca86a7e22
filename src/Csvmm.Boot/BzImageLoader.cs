using System.Buffers.Binary;
using Csvmm.Memory;
using static Csvmm.Boot.BootParamsLayout;

namespace Csvmm.Boot;

/// <summary>
/// Loads a bzImage for the Linux 64-bit boot protocol (Documentation/arch/x86/boot.rst): the protected-mode kernel
/// at <see cref="Layout.KernelLoad"/>, the zero page at <see cref="Layout.ZeroPage"/>, the command line at
/// <see cref="Layout.Cmdline"/> and the initrd as high as the kernel allows. Everything is validated before the
/// first byte is written, so a refused image leaves guest memory untouched.
/// </summary>
public static class BzImageLoader
{
    /// <summary>
    /// heap_end_ptr: the end of the setup heap relative to the real-mode code, minus 0x200. Only the real-mode setup
    /// code uses it, which the 64-bit entry skips; csvmm sets the conventional value (a 64 KiB real-mode segment)
    /// together with CAN_USE_HEAP, as QEMU does.
    /// </summary>
    public const ushort HeapEnd = 0xFE00;

    /// <summary>Validates <paramref name="kernel"/>, writes it and its boot data into <paramref name="memory"/>, and returns how to enter it.</summary>
    /// <exception cref="BootException">The image is invalid or does not fit the guest; nothing has been written.</exception>
    public static BootPlan Load(GuestMemory memory, BootFile kernel, BootOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(options);
        var image = kernel.Bytes.Span;
        var header = SetupHeader.Parse(image, kernel.Name);

        // ---- where everything goes ----
        ulong load = Layout.KernelLoad.Value;
        ulong payloadSize = (ulong)(image.Length - header.SetupSize); // the whole rest of the file, as QEMU loads it
        ulong lowRamEnd = Math.Min(GuestRam.ContiguousEnd(memory, load), Layout.MmioHoleStart.Value);
        if (lowRamEnd == 0)
            throw new BootException($"{kernel.Name}: guest has no RAM at the kernel load address {Layout.KernelLoad}");
        ulong payloadEnd = load + payloadSize; // payload < 2 GiB and load = 1 MiB: no overflow
        if (payloadEnd > lowRamEnd)
            throw new BootException($"{kernel.Name}: kernel of {Size.Describe(payloadSize)} at {Layout.KernelLoad} does not fit below the end of low RAM 0x{lowRamEnd:x}");

        if (!header.TryGetRuntimeStart(load, out ulong runtimeStart) || runtimeStart > ulong.MaxValue - header.InitSize || runtimeStart < load)
            throw new BootException($"{kernel.Name}: corrupt bzImage: pref_address 0x{header.PrefAddress:x}, kernel_alignment 0x{header.KernelAlignment:x} and init_size 0x{header.InitSize:x} give no runtime area above the load address");
        ulong runtimeEnd = runtimeStart + header.InitSize;
        if (runtimeEnd > lowRamEnd)
            throw new BootException(
                $"{kernel.Name}: the kernel needs RAM up to 0x{runtimeEnd:x} (runtime start 0x{runtimeStart:x} + init_size 0x{header.InitSize:x}) but low RAM ends at 0x{lowRamEnd:x}; give the guest more memory");
        ulong kernelEnd = Math.Max(payloadEnd, runtimeEnd);

        byte[] commandLine = CommandLine.Encode(options.CommandLine, header.CmdlineSize, kernel.Name);

        ulong initrdAddress = 0, initrdSize = 0;
        if (options.Initrd is { } initrd)
        {
            ulong ceiling = Math.Min(lowRamEnd, (ulong)header.InitrdAddrMax + 1);
            initrdAddress = InitrdPlacement.Place(initrd, kernelEnd, ceiling);
            initrdSize = (ulong)initrd.Length;
        }

        var e820 = E820Map.ForMemory(memory);
        if (e820.Count > E820MaxEntries)
            throw new BootException($"E820 map has {e820.Count} entries; the zero page holds at most {E820MaxEntries}");

        GuestRam.EnsureCovers(memory, Layout.ZeroPage.Value, BootParamsLayout.Size, "zero page");
        GuestRam.EnsureCovers(memory, Layout.Cmdline.Value, (ulong)commandLine.Length, "kernel command line");

        // ---- write ----
        var zeroPage = BuildZeroPage(image, header, initrdAddress, initrdSize, e820, options.RsdpAddress);
        GuestRam.Write(memory, Layout.ZeroPage.Value, zeroPage, "zero page");
        CommandLine.Write(memory, commandLine);
        GuestRam.Write(memory, load, image[header.SetupSize..], $"{kernel.Name} kernel");
        if (options.Initrd is { } rd)
            GuestRam.Write(memory, initrdAddress, rd.Bytes.Span, $"{rd.Name} initrd");

        return new BootPlan(EntryMode.Linux64, new GuestAddress(load + SetupFlags.Entry64Offset), Layout.ZeroPage)
        {
            ImageStart = Layout.KernelLoad,
            ImageEnd = new GuestAddress(kernelEnd),
            InitrdStart = new GuestAddress(initrdAddress),
            InitrdSize = initrdSize,
        };
    }

    /// <summary>
    /// A clean boot_params with the image's setup header copied in (only the bytes the header declares, so the
    /// sentinel and anything after the header stay zero) and the loader's fields filled.
    /// </summary>
    private static byte[] BuildZeroPage(ReadOnlySpan<byte> image, SetupHeader header,
        ulong initrdAddress, ulong initrdSize, E820Map e820, GuestAddress? rsdp)
    {
        var page = new byte[BootParamsLayout.Size];
        var span = page.AsSpan();
        image[Hdr..header.HeaderEnd].CopyTo(span[Hdr..]);

        span[TypeOfLoader] = SetupFlags.LoaderUndefined;
        span[LoadFlags] = (byte)(header.LoadFlags | SetupFlags.CanUseHeap);
        BinaryPrimitives.WriteUInt16LittleEndian(span[BootParamsLayout.HeapEndPtr..], HeapEnd);
        BinaryPrimitives.WriteUInt32LittleEndian(span[Code32Start..], (uint)Layout.KernelLoad.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(span[CmdLinePtr..], checked((uint)Layout.Cmdline.Value));
        BinaryPrimitives.WriteUInt32LittleEndian(span[ExtCmdLinePtr..], 0);
        // initrd is below the 32-bit MMIO hole, so ext_ramdisk_* (the high halves) stay zero.
        BinaryPrimitives.WriteUInt32LittleEndian(span[RamdiskImage..], checked((uint)initrdAddress));
        BinaryPrimitives.WriteUInt32LittleEndian(span[RamdiskSize..], checked((uint)initrdSize));
        if (rsdp is { } address)
            BinaryPrimitives.WriteUInt64LittleEndian(span[AcpiRsdpAddr..], address.Value);

        span[E820Entries] = (byte)e820.Count;
        for (int i = 0; i < e820.Count; i++)
        {
            var entry = e820.Entries[i];
            var slot = span.Slice(E820Table + i * E820EntrySize, E820EntrySize);
            BinaryPrimitives.WriteUInt64LittleEndian(slot, entry.Address.Value);
            BinaryPrimitives.WriteUInt64LittleEndian(slot[8..], entry.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(slot[16..], (uint)entry.Type);
        }
        return page;
    }
}
