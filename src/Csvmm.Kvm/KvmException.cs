using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace Csvmm.Kvm;

/// <summary>The KVM layer's error: a failed open/ioctl/mmap on a KVM file descriptor, or a missing capability.</summary>
public sealed class KvmException : Exception
{
    public KvmException(string message, int errno = 0) : base(message) => Errno = errno;

    /// <summary>The errno of the failed call, or 0.</summary>
    public int Errno { get; }

    [DoesNotReturn]
    internal static void ThrowErrno(string operation, int errno) =>
        throw new KvmException($"{operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
}
