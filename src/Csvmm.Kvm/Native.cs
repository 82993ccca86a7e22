using System.Runtime.CompilerServices;
using Tmds.Linux;

using Csvmm.Sys;

namespace Csvmm.Kvm;

/// <summary>The single place raw ioctl calls happen. errno is read right after each call.</summary>
internal static unsafe class Native
{
    /// <summary>ioctl with the fd kept alive for the call's duration. Returns the result, or -errno.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Ioctl(FdHandle h, uint request, void* arg)
    {
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            int r = LibC.ioctl(h.RawFd, unchecked((int)request), arg);
            return r < 0 ? -LibC.errno : r;
        }
        finally
        {
            if (added) h.DangerousRelease();
        }
    }

    /// <summary>ioctl with an integer argument. Returns the result, or -errno.</summary>
    public static int Ioctl(FdHandle h, uint request, ulong arg) => Ioctl(h, request, (void*)arg);

    /// <summary>ioctl that must succeed; throws <see cref="KvmException"/> naming <paramref name="what"/>.</summary>
    public static int Check(FdHandle h, uint request, void* arg, string what)
    {
        int r = Ioctl(h, request, arg);
        if (r < 0) KvmException.ThrowErrno(what, -r);
        return r;
    }
}
