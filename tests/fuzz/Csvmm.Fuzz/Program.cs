using Csvmm.Fuzz;

// csvmm-fuzz list                      the targets
// csvmm-fuzz run TARGET                under afl-fuzz (SharpFuzz's fork server reads the inputs)
// csvmm-fuzz replay TARGET PATH...     each file (or every file of each directory) once; exit 1 on a crash
// csvmm-fuzz seed TARGET DIR           writes the target's built-in seeds into DIR
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: csvmm-fuzz list | run TARGET | replay TARGET PATH... | seed TARGET DIR");
    return 2;
}
if (args[0] == "list")
{
    foreach (var t in FuzzTargets.All) Console.WriteLine($"{t.Name,-16} {t.Description}");
    return 0;
}
if (args.Length < 2 || FuzzTargets.Find(args[1]) is not { } target)
{
    Console.Error.WriteLine($"csvmm-fuzz: unknown target '{(args.Length > 1 ? args[1] : "")}' (csvmm-fuzz list)");
    return 2;
}
switch (args[0])
{
    case "run":
        SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
        {
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            target.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
        });
        return 0;
    case "replay":
        int n = 0;
        foreach (var path in args.Skip(2).SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p).Order() : (IEnumerable<string>)[p]))
        {
            try
            {
                target.Run(File.ReadAllBytes(path));
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"csvmm-fuzz: {target.Name}: {path}: {e.GetType().Name}: {e.Message}");
                Console.Error.WriteLine(e.StackTrace);
                return 1;
            }
            n++;
        }
        Console.WriteLine($"{target.Name}: {n} inputs, no crash");
        return 0;
    case "seed":
        if (args.Length != 3) goto default;
        Directory.CreateDirectory(args[2]);
        foreach (var (name, bytes) in target.Seeds()) File.WriteAllBytes(Path.Combine(args[2], name), bytes);
        return 0;
    default:
        Console.Error.WriteLine("usage: csvmm-fuzz list | run TARGET | replay TARGET PATH... | seed TARGET DIR");
        return 2;
}
