// csvmm runs on Linux only (Unix sockets, SO_PEERCRED, umask).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
