namespace Csvmm.Boot;

/// <summary>
/// Chooses where the initrd goes: page-aligned, as high as possible below <c>ceiling</c>, and above the end of the
/// memory the kernel needs, as QEMU and Firecracker do (the kernel then does not have to move it out of the way).
/// </summary>
internal static class InitrdPlacement
{
    /// <summary>
    /// The initrd's address.
    /// </summary>
    /// <param name="initrd">The initrd.</param>
    /// <param name="kernelEnd">Last byte + 1 the kernel uses.</param>
    /// <param name="ceiling">Last byte + 1 the initrd may occupy (end of low RAM, the kernel's initrd_addr_max + 1).</param>
    public static ulong Place(BootFile initrd, ulong kernelEnd, ulong ceiling)
    {
        ulong size = (ulong)initrd.Length;
        if (!Size.TryAlignUp(kernelEnd, Size.Page, out ulong floor) || size > ceiling || Size.AlignDown(ceiling - size, Size.Page) < floor)
            throw new BootException(
                $"{initrd.Name}: initrd of {Size.Describe(size)} does not fit between the kernel's end 0x{kernelEnd:x} and 0x{ceiling:x}; give the guest more memory");
        return Size.AlignDown(ceiling - size, Size.Page);
    }
}
