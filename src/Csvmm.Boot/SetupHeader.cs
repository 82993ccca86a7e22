using System.Buffers.Binary;
using L = Csvmm.Boot.BootParamsLayout;

namespace Csvmm.Boot;

/// <summary>
/// The validated setup header of a bzImage (Documentation/arch/x86/boot.rst): the fields the loader needs, plus
/// the sizes derived from them. <see cref="Parse"/> accepts only an image that can be entered at its 64-bit entry
/// point: boot protocol 2.12 or newer with XLF_KERNEL_64, loaded high, and as long as its header says.
/// </summary>
public readonly record struct SetupHeader
{
    /// <summary>Oldest boot protocol csvmm accepts: 2.12 introduced xloadflags and so XLF_KERNEL_64.</summary>
    public const ushort MinVersion = 0x020C;

    /// <summary>Setup sectors after the boot sector (a 0 in the file means 4).</summary>
    public int SetupSects { get; init; }
    /// <summary>Protected-mode kernel size in 16-byte paragraphs.</summary>
    public uint SysSize { get; init; }
    /// <summary>Boot protocol version, e.g. 0x020F for 2.15.</summary>
    public ushort Version { get; init; }
    /// <summary>loadflags as the image has them (LOADED_HIGH is set).</summary>
    public byte LoadFlags { get; init; }
    /// <summary>xloadflags (XLF_KERNEL_64 is set).</summary>
    public ushort XLoadFlags { get; init; }
    /// <summary>Highest address the initrd's last byte may occupy.</summary>
    public uint InitrdAddrMax { get; init; }
    /// <summary>Alignment of the runtime start of a relocatable kernel (a power of two when <see cref="Relocatable"/>).</summary>
    public uint KernelAlignment { get; init; }
    /// <summary>relocatable_kernel: the kernel may run at an address other than <see cref="PrefAddress"/>.</summary>
    public bool Relocatable { get; init; }
    /// <summary>Longest command line the kernel accepts, excluding the terminating NUL.</summary>
    public uint CmdlineSize { get; init; }
    /// <summary>Preferred load address (the kernel's LOAD_PHYSICAL_ADDR).</summary>
    public ulong PrefAddress { get; init; }
    /// <summary>Bytes the kernel needs from its runtime start before it reads the memory map.</summary>
    public uint InitSize { get; init; }
    /// <summary>First byte after the setup header in the image: 0x202 + the jump's rel8 byte at 0x201.</summary>
    public int HeaderEnd { get; init; }

    /// <summary>Bytes of real-mode code before the protected-mode kernel: (setup_sects + 1) * 512.</summary>
    public int SetupSize => (SetupSects + 1) * 512;
    /// <summary>Protected-mode kernel size the header declares.</summary>
    public ulong DeclaredKernelSize => (ulong)SysSize * 16;
    /// <summary>"2.15".</summary>
    public string VersionText => FormatVersion(Version);

    /// <summary>Parses and validates the setup header of <paramref name="image"/>; <paramref name="name"/> is used in messages.</summary>
    /// <exception cref="BootException">The image is not a bzImage, is truncated, corrupt, or has no 64-bit entry point.</exception>
    public static SetupHeader Parse(ReadOnlySpan<byte> image, string name)
    {
        int length = image.Length;
        if (length < L.Header + 4)
            throw new BootException($"{name}: {length} bytes is too short for a bzImage setup header (need at least 0x{L.Header + 4:x})");
        if (BinaryPrimitives.ReadUInt32LittleEndian(image[L.Header..]) != SetupFlags.HeaderMagic)
            throw new BootException($"{name}: not a bzImage (no HdrS magic at 0x{L.Header:x})");
        ushort bootFlag = BinaryPrimitives.ReadUInt16LittleEndian(image[L.BootFlag..]);
        if (bootFlag != SetupFlags.BootFlagMagic)
            throw new BootException($"{name}: corrupt bzImage: boot_flag is 0x{bootFlag:x4}, expected 0x{SetupFlags.BootFlagMagic:x4}");
        if (length < L.Version + 2)
            throw new BootException($"{name}: truncated bzImage: {length} bytes end inside the setup header");

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(image[L.Version..]);
        if (version < MinVersion)
            throw new BootException($"{name}: boot protocol {FormatVersion(version)} is too old: the 64-bit entry needs 2.12 or newer");

        int headerEnd = L.Jump + 2 + image[L.Jump + 1];
        if (headerEnd < L.InitSize + 4 || headerEnd > L.HdrRoomEnd)
            throw new BootException($"{name}: corrupt bzImage: the jump at 0x{L.Jump:x} puts the setup header end at 0x{headerEnd:x}, protocol {FormatVersion(version)} needs 0x{L.InitSize + 4:x}..0x{L.HdrRoomEnd:x}");
        if (length < headerEnd)
            throw new BootException($"{name}: truncated bzImage: the setup header ends at 0x{headerEnd:x} but the file has only {length} bytes");

        byte loadFlags = image[L.LoadFlags];
        if ((loadFlags & SetupFlags.LoadedHigh) == 0)
            throw new BootException($"{name}: not a bzImage: LOADED_HIGH is clear in loadflags (a zImage?)");
        ushort xloadFlags = BinaryPrimitives.ReadUInt16LittleEndian(image[L.XLoadFlags..]);
        if ((xloadFlags & SetupFlags.XlfKernel64) == 0)
            throw new BootException($"{name}: the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags; a 32-bit kernel?)");

        int setupSects = image[L.SetupSects] == 0 ? 4 : image[L.SetupSects];
        int setupSize = (setupSects + 1) * 512; // at most 256 * 512: cannot overflow
        if (length < setupSize)
            throw new BootException($"{name}: truncated bzImage: setup_sects = {setupSects} means {setupSize} bytes of setup code but the file has only {length} bytes");

        uint sysSize = BinaryPrimitives.ReadUInt32LittleEndian(image[L.SysSize..]);
        ulong declared = (ulong)sysSize * 16; // < 2^36: cannot overflow
        ulong available = (ulong)(length - setupSize);
        if (sysSize == 0)
            throw new BootException($"{name}: corrupt bzImage: syssize is 0");
        if (declared > available)
            throw new BootException($"{name}: truncated bzImage: syssize says the kernel is {declared} bytes but only {available} follow the {setupSize}-byte setup code");

        bool relocatable = image[L.RelocatableKernel] != 0;
        uint alignment = BinaryPrimitives.ReadUInt32LittleEndian(image[L.KernelAlignment..]);
        if (relocatable && (alignment == 0 || (alignment & (alignment - 1)) != 0))
            throw new BootException($"{name}: corrupt bzImage: kernel_alignment 0x{alignment:x} is not a power of two");
        uint initSize = BinaryPrimitives.ReadUInt32LittleEndian(image[L.InitSize..]);
        if (initSize == 0)
            throw new BootException($"{name}: corrupt bzImage: init_size is 0");

        return new SetupHeader
        {
            SetupSects = setupSects,
            SysSize = sysSize,
            Version = version,
            LoadFlags = loadFlags,
            XLoadFlags = xloadFlags,
            InitrdAddrMax = BinaryPrimitives.ReadUInt32LittleEndian(image[L.InitrdAddrMax..]),
            KernelAlignment = alignment,
            Relocatable = relocatable,
            CmdlineSize = BinaryPrimitives.ReadUInt32LittleEndian(image[L.CmdlineSize..]),
            PrefAddress = BinaryPrimitives.ReadUInt64LittleEndian(image[L.PrefAddress..]),
            InitSize = initSize,
            HeaderEnd = headerEnd,
        };
    }

    /// <summary>
    /// Where the kernel runs after decompressing itself when its protected-mode part is loaded at
    /// <paramref name="loadAddress"/> (the algorithm in boot.rst's description of init_size); false when aligning
    /// the address overflows.
    /// </summary>
    public bool TryGetRuntimeStart(ulong loadAddress, out ulong runtimeStart)
    {
        if (!Relocatable)
        {
            runtimeStart = PrefAddress;
            return true;
        }
        return Size.TryAlignUp(Math.Max(loadAddress, PrefAddress), KernelAlignment, out runtimeStart);
    }

    private static string FormatVersion(ushort version) => $"{version >> 8}.{version & 0xFF:D2}";
}
