namespace Csvmm.Acpi.Aml;

/// <summary>Something that encodes itself as AML: a term, a data object or a name.</summary>
public interface IAmlObject
{
    /// <summary>Appends this object's AML encoding to <paramref name="writer"/>.</summary>
    void WriteTo(AmlWriter writer);
}
