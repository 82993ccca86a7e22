namespace Csvmm.Devices;

/// <summary>The device layer's error: a bus misconfiguration by the machine builder (overlap, late registration).</summary>
public sealed class DeviceException : Exception
{
    public DeviceException(string message) : base(message) { }
}
