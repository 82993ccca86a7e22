namespace Csvmm.Fuzz;

/// <summary>
/// One fuzz target: feeds an input to one parser or device model the way an attacker could (a file, a socket, a
/// guest's register and memory traffic). <see cref="Run"/> lets escape only what is a bug: every refusal the code
/// documents (its layer's exception type, an error reply, an I/O error to the guest) is caught inside, and every
/// invariant the target checks afterwards throws <see cref="FuzzInvariantException"/> when broken.
/// </summary>
public interface IFuzzTarget
{
    /// <summary>The name run.sh and the corpus directories use (tests/fuzz/corpus/NAME).</summary>
    string Name { get; }

    /// <summary>One line: what is fuzzed.</summary>
    string Description { get; }

    /// <summary>Runs one input. Throws only on a bug.</summary>
    void Run(ReadOnlySpan<byte> input);

    /// <summary>Valid (or nearly valid) inputs built by code, written to the seed corpus by <c>csvmm-fuzz seed</c>.</summary>
    IEnumerable<(string Name, byte[] Bytes)> Seeds();
}

/// <summary>A target's invariant did not hold after an input: a bug, reported as a crash.</summary>
public sealed class FuzzInvariantException(string message) : Exception(message);

/// <summary>Checks for targets.</summary>
public static class Invariant
{
    public static void Holds(bool condition, string what)
    {
        if (!condition) throw new FuzzInvariantException(what);
    }
}
