// libsepol, glibc and /proc: Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
