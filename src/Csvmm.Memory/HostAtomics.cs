using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Csvmm.Memory;

/// <summary>
/// Atomic operations on guest RAM that .NET has no API for. <see cref="CompareExchange128"/> is the processor's own
/// <c>LOCK CMPXCHG16B</c>, so it is atomic against the guest's other vCPUs (running natively or emulated) and against
/// devices: it runs from a small stub mapped executable once per process (the bytes are fixed and proven by a test
/// that assembles the same instructions with Iced).
/// </summary>
public static unsafe class HostAtomics
{
    /// <summary>
    /// <c>int stub(UInt128* target, UInt128* expected, UInt128* desired)</c> (System V): RDX:RAX = *expected,
    /// RCX:RBX = *desired, LOCK CMPXCHG16B [target], *expected = RDX:RAX, return ZF.
    /// </summary>
    internal static ReadOnlySpan<byte> Cmpxchg16bStub =>
    [
        0x53,                         // push rbx
        0x49, 0x89, 0xD0,             // mov r8, rdx
        0x48, 0x8B, 0x06,             // mov rax, [rsi]
        0x48, 0x8B, 0x56, 0x08,       // mov rdx, [rsi+8]
        0x49, 0x8B, 0x18,             // mov rbx, [r8]
        0x49, 0x8B, 0x48, 0x08,       // mov rcx, [r8+8]
        0xF0, 0x48, 0x0F, 0xC7, 0x0F, // lock cmpxchg16b [rdi]
        0x48, 0x89, 0x06,             // mov [rsi], rax
        0x48, 0x89, 0x56, 0x08,       // mov [rsi+8], rdx
        0x0F, 0x94, 0xC0,             // sete al
        0x0F, 0xB6, 0xC0,             // movzx eax, al
        0x5B,                         // pop rbx
        0xC3,                         // ret
    ];

    /// <summary>The stub's bytes (tests compare them with Iced's assembly of the same instructions).</summary>
    public static ReadOnlySpan<byte> Cmpxchg16bStubForTests => Cmpxchg16bStub;

    private static readonly Lazy<nint> s_stub = new(MapStub, LazyThreadSafetyMode.ExecutionAndPublication);

    private static nint MapStub()
    {
        ReadOnlySpan<byte> code = Cmpxchg16bStub;
        void* page = LibC.mmap(null, 4096, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
        if (page == LibC.MAP_FAILED)
            throw new GuestMemoryException($"cannot map the cmpxchg16b stub: {Marshal.GetPInvokeErrorMessage(LibC.errno)}");
        code.CopyTo(new Span<byte>(page, 4096));
        // Write, then execute: the page is never writable and executable at once.
        if (LibC.mprotect(page, 4096, LibC.PROT_READ | LibC.PROT_EXEC) != 0)
            throw new GuestMemoryException($"cannot make the cmpxchg16b stub executable: {Marshal.GetPInvokeErrorMessage(LibC.errno)}");
        return (nint)page;
    }

    /// <summary>
    /// Atomically: when the 16 bytes at <paramref name="target"/> equal <paramref name="expected"/>, stores
    /// <paramref name="desired"/> and returns true; otherwise returns false. Either way <paramref name="expected"/> ends
    /// up holding what was there. <paramref name="target"/> must be 16-byte aligned (the instruction faults otherwise).
    /// </summary>
    public static bool CompareExchange128(UInt128* target, ref UInt128 expected, UInt128 desired)
    {
        if (((nuint)target & 15) != 0) throw new ArgumentException("the target of a 16-byte compare-exchange must be 16-byte aligned", nameof(target));
        var stub = (delegate* unmanaged<UInt128*, UInt128*, UInt128*, int>)s_stub.Value;
        // Safe: the stub reads *expected and *desired, updates *expected and does one locked access to *target (aligned,
        // checked above); all three are pinned for the call (target is native memory, the others are locals/refs fixed here).
        fixed (UInt128* e = &expected)
            return stub(target, e, &desired) != 0;
    }
}
