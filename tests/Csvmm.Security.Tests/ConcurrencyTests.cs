using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>libsepol has one global SID table and no locks: SepolEngine must serialise every call.</summary>
[Collection(LibsepolCollection.Name)]
public sealed class ConcurrencyTests(PolicyFixture policy)
{
    [Fact]
    public void Two_threads_deciding_at_once_get_the_single_threaded_answers()
    {
        var engine = policy.Engine;
        var gate = new EntrypointGate(engine, EnforcementMode.Enforcing, AvcOrigin.Current);
        (string Process, string Disk)[] work =
        [
            ("user_u:user_r:user_t", "system_u:object_r:qemu_virtdisk_t"),
            ("staff_u:staff_r:staff_t", "system_u:object_r:untrusted_disk_t"),
            ("guest_u:guest_r:guest_t", "system_u:object_r:qemu_virtdisk_t"),
            ("guest_u:guest_r:guest_t", "system_u:object_r:untrusted_disk_t"),
        ];
        var expected = work.Select(w => Summary(gate.Check(w.Process, DiskLabel.Labelled("/d", w.Disk, "t")))).ToArray();

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var start = new Barrier(2);
        var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < 1500; i++)
            {
                int k = (i + t) % work.Length;
                string got = Summary(gate.Check(work[k].Process, DiskLabel.Labelled("/d", work[k].Disk, "t")));
                if (got != expected[k])
                    errors.Enqueue($"thread {t} iteration {i}: {got} != {expected[k]}");
                // New contexts too: every one inserts into libsepol's SID table.
                var sid = engine.GetSid($"user_u:object_r:vm_{(i % 2 == 0 ? "user" : "staff")}_t");
                if (!engine.GetContext(sid).EndsWith(i % 2 == 0 ? "vm_user_t" : "vm_staff_t", StringComparison.Ordinal))
                    errors.Enqueue($"thread {t} iteration {i}: SID round trip failed");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(errors);
    }

    [Fact]
    public void Two_threads_explaining_constraint_denials_at_once_get_intact_explanations()
    {
        // libsepol builds the explanation in process-global buffers (reason_buf_used/len, an
        // expression stack): unserialised callers corrupt each other's text or memory.
        var engine = SepolEngine.Load(policy.ConstrainedPolicyPath);
        var file = engine.GetClass("file");
        uint read = engine.GetPermission(file, "read");
        SecurityId user = engine.GetSid("user_u:user_r:user_t"), disk = engine.GetSid("system_u:object_r:qemu_virtdisk_t");
        AccessDecision expected = engine.ComputeAccess(user, disk, file, read);
        Assert.NotNull(expected.ConstraintExplanation);

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var start = new Barrier(2);
        var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < 20000 && errors.IsEmpty; i++)
            {
                try
                {
                    var got = engine.ComputeAccess(user, disk, file, read);
                    if (got != expected)
                        errors.Enqueue($"thread {t} iteration {i}: {got} != {expected}");
                }
                catch (Exception e)
                {
                    errors.Enqueue($"thread {t} iteration {i}: {e.Message}");
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(errors);
    }

    private static string Summary(EntrypointDecision d) =>
        $"{d.FileRead.State}/{d.TypeChange.State}/{d.Entrypoint.State}/{d.VmContext}/{d.PolicyAllows}/{d.DenialReason}";
}
