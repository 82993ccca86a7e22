using Csvmm.Sys;

namespace Csvmm.Kvm;

/// <summary>/dev/kvm.</summary>
public sealed class KvmSystemHandle : FdHandle { }

/// <summary>A VM file descriptor from KVM_CREATE_VM.</summary>
public sealed class KvmVmHandle : FdHandle { }

/// <summary>A vCPU file descriptor from KVM_CREATE_VCPU.</summary>
public sealed class KvmVcpuHandle : FdHandle { }
