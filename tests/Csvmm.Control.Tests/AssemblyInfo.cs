// csvmm runs on Linux only; the tests use Unix sockets.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
