// csvmm runs on Linux only; the tests use Unix file modes, symlinks and /proc.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
