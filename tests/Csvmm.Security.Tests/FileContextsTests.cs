using Csvmm.Security;

namespace Csvmm.Security.Tests;

/// <summary>file_contexts parsing and matchpathcon-style lookup.</summary>
public sealed class FileContextsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("csvmm-fc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Sample = """
        # comment
        /srv/vm(/.*)?                     system_u:object_r:qemu_virtdisk_t

          /srv/vm/incoming(/.*)?          system_u:object_r:untrusted_disk_t
        /srv/vm/incoming/blessed\.img     system_u:object_r:qemu_virtdisk_t
        /srv/vm/.*\.iso                   system_u:object_r:untrusted_disk_t
        /srv/vm/lost\+found(/.*)?         <<none>>
        /srv/dev/.*              -b       system_u:object_r:qemu_virtdisk_t
        /srv/dev/.*              --       system_u:object_r:untrusted_disk_t
        /srv/x|/srv/y                     system_u:object_r:qemu_virtdisk_t
        """;

    [Theory]
    [InlineData("/srv/vm/a.img", "system_u:object_r:qemu_virtdisk_t", 2)]
    [InlineData("/srv/vm", "system_u:object_r:qemu_virtdisk_t", 2)]
    [InlineData("/srv/vm/incoming/b.img", "system_u:object_r:untrusted_disk_t", 4)]          // later line wins
    [InlineData("/srv/vm/incoming/blessed.img", "system_u:object_r:qemu_virtdisk_t", 5)]     // literal path beats every regex
    [InlineData("/srv/vm/incoming/blessedXimg", "system_u:object_r:untrusted_disk_t", 4)]    // the literal's \. is a dot only
    [InlineData("/srv/vm/incoming/c.iso", "system_u:object_r:untrusted_disk_t", 6)]
    [InlineData("/srv/vm/lost+found/x.img", null, 7)]                                        // <<none>>
    [InlineData("//srv//vm///a.img", "system_u:object_r:qemu_virtdisk_t", 2)]                // duplicate slashes collapse
    [InlineData("/srv/vm/a.img/", "system_u:object_r:qemu_virtdisk_t", 2)]                   // trailing slash dropped
    [InlineData("/srv/vmx/a.img", null, null)]                                               // anchored: no prefix match
    [InlineData("/x/srv/vm/a.img", null, null)]                                              // anchored at the start
    [InlineData("/srv/vm/a.img\n", "system_u:object_r:qemu_virtdisk_t", 2)]                  // '.' matches newline (PCRE2_DOTALL)
    [InlineData("/srv/x/anything", "system_u:object_r:qemu_virtdisk_t", 10)]                 // ^/srv/x|/srv/y$ as libselinux anchors it
    [InlineData("/anything/srv/y", "system_u:object_r:qemu_virtdisk_t", 10)]
    public void Lookup_follows_libselinux_precedence(string path, string? context, int? line)
    {
        var fc = FileContexts.Parse(Sample, "sample");
        var entry = fc.Match(path, FileKind.Regular);
        Assert.Equal(line, entry?.Line);
        var label = fc.Lookup(path, FileKind.Regular);
        Assert.Equal(context, label.Context);
        if (context is null)
            Assert.NotNull(label.Failure);
    }

    [Fact]
    public void None_and_no_match_are_explained()
    {
        var fc = FileContexts.Parse(Sample, "sample");
        Assert.Equal("sample line 7 leaves /srv/vm/lost+found/x unlabelled (<<none>>)", fc.Lookup("/srv/vm/lost+found/x", FileKind.Regular).Failure);
        Assert.Equal("no line of sample matches /etc/passwd", fc.Lookup("/etc/passwd", FileKind.Regular).Failure);
        Assert.Equal("sample line 2", fc.Lookup("/srv/vm/a", FileKind.Regular).Source);
    }

    [Theory]
    [InlineData(FileKind.BlockDevice, "system_u:object_r:qemu_virtdisk_t")]
    [InlineData(FileKind.Regular, "system_u:object_r:untrusted_disk_t")]
    [InlineData(FileKind.CharDevice, null)]
    [InlineData(FileKind.Any, "system_u:object_r:untrusted_disk_t")] // kind unknown: every line applies, the last one wins
    public void File_type_restricts_a_line(FileKind kind, string? context)
    {
        var fc = FileContexts.Parse(Sample, "sample");
        Assert.Equal(context, fc.Lookup("/srv/dev/sda", kind).Context);
    }

    [Theory]
    [InlineData("/a", "missing fields")]
    [InlineData("/a -- system_u:object_r:t_t extra", "too many fields")]
    [InlineData("/a -x system_u:object_r:t_t", "invalid file type '-x'")]
    [InlineData("/a(  system_u:object_r:t_t", "invalid regex")]
    [InlineData("/a system_u:object_r", "invalid context")]
    [InlineData("/a(/.*)? system_u:object_r:a_t\n/a(/.*)? -- system_u:object_r:b_t", "line 2: '/a(/.*)?' is already specified on line 1")]
    public void Malformed_files_are_rejected(string text, string message)
    {
        var e = Assert.Throws<SecurityPolicyException>(() => FileContexts.Parse(text, "bad"));
        Assert.Equal(PolicyErrorKind.FileContextsInvalid, e.Kind);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Same_pattern_for_different_file_types_is_allowed()
    {
        var fc = FileContexts.Parse("/a -b system_u:object_r:a_t\n/a -- system_u:object_r:b_t", "ok");
        Assert.Equal("system_u:object_r:a_t", fc.Lookup("/a", FileKind.BlockDevice).Context);
        Assert.Equal("system_u:object_r:b_t", fc.Lookup("/a", FileKind.Regular).Context);
    }

    [Theory]
    [InlineData("/var/lib/csvmm/images", false)]
    [InlineData("/var/lib/csvmm/images/lost\\+found", false)]
    [InlineData("/var/lib/csvmm/images(/.*)?", true)]
    [InlineData("/a/b.img", true)]
    [InlineData("/a/b\\.img", false)]
    [InlineData("/a/[0-9]", true)]
    public void Literal_detection_matches_libselinux(string pattern, bool meta)
    {
        Assert.Equal(meta, FileContexts.HasMetaCharacters(pattern));
    }

    private FileContexts TempMapping() => FileContexts.Parse($"""
        {_dir}/images(/.*)?     system_u:object_r:qemu_virtdisk_t
        {_dir}/untrusted(/.*)?  system_u:object_r:untrusted_disk_t
        """, "temp");

    [Fact]
    public void Symlinks_are_resolved_before_lookup()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "images"));
        Directory.CreateDirectory(Path.Combine(_dir, "untrusted"));
        string untrustedImage = Path.Combine(_dir, "untrusted", "evil.img");
        File.WriteAllText(untrustedImage, "x");
        // A link inside the trusted directory pointing at an untrusted image keeps the untrusted label...
        string link = Path.Combine(_dir, "images", "looks-trusted.img");
        File.CreateSymbolicLink(link, untrustedImage);
        // ...and so does a path that walks through a linked directory and "..".
        Directory.CreateSymbolicLink(Path.Combine(_dir, "images", "dirlink"), Path.Combine(_dir, "untrusted"));

        var fc = TempMapping();
        var viaLink = fc.LookupFile(link);
        Assert.Equal(untrustedImage, viaLink.Path);
        Assert.Equal("system_u:object_r:untrusted_disk_t", viaLink.Context);
        var viaDir = fc.LookupFile(Path.Combine(_dir, "images", "dirlink", "..", "untrusted", "evil.img"));
        Assert.Equal("system_u:object_r:untrusted_disk_t", viaDir.Context);
        Assert.Equal("system_u:object_r:untrusted_disk_t", fc.LookupFile(Path.Combine(_dir, "images", "dirlink", "evil.img")).Context);
    }

    [Fact]
    public void Opened_descriptor_is_labelled_by_the_file_it_refers_to()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "images"));
        Directory.CreateDirectory(Path.Combine(_dir, "untrusted"));
        string image = Path.Combine(_dir, "images", "a.img");
        File.WriteAllText(image, "x");
        var fc = TempMapping();
        using var handle = File.OpenHandle(image, FileMode.Open, FileAccess.Read);
        // Renaming the file after opening it: the label follows the opened file, not the old path.
        string moved = Path.Combine(_dir, "untrusted", "a.img");
        File.Move(image, moved);

        var label = fc.LookupOpened(handle);

        Assert.Equal(moved, label.Path);
        Assert.Equal("system_u:object_r:untrusted_disk_t", label.Context);
        File.Delete(moved);
        Assert.Contains("was deleted or replaced after it was opened", fc.LookupOpened(handle).Failure);
    }

    [Fact]
    public void Missing_disk_is_unlabelled()
    {
        var label = TempMapping().LookupFile(Path.Combine(_dir, "images", "nope.img"));
        Assert.Null(label.Context);
        Assert.Contains("No such file or directory", label.Failure);
    }

    [Fact]
    public void Load_checks_trust_on_the_opened_file()
    {
        string path = Path.Combine(_dir, "fc");
        File.WriteAllText(path, "/a system_u:object_r:a_t\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
        var e = Assert.Throws<SecurityPolicyException>(() => FileContexts.Load(path, FileTrust.RootOwned));
        Assert.Contains("writable by group or others", e.Message);
        Assert.Single(FileContexts.Load(path, FileTrust.Any).Entries);
        var missing = Assert.Throws<SecurityPolicyException>(() => FileContexts.Load(Path.Combine(_dir, "none")));
        Assert.Contains("cannot read file_contexts", missing.Message);
    }

    [Fact]
    public void Xattr_label_is_read_from_the_descriptor()
    {
        string path = Path.Combine(_dir, "x.img");
        File.WriteAllText(path, "x");
        using (var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read))
            Assert.Contains("has no security.selinux attribute", DiskLabel.FromXattr(h, path).Failure);
        // Without SELinux in the kernel any owner may set this attribute (which is why csvmm trusts it only on request).
        Tool.RunChecked("python3", "-c", "import os,sys; os.setxattr(sys.argv[1], 'security.selinux', b'system_u:object_r:qemu_virtdisk_t\\0')", path);
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var label = DiskLabel.FromXattr(handle, path);
        Assert.Equal("system_u:object_r:qemu_virtdisk_t", label.Context);
        Assert.Equal("security.selinux xattr", label.Source);
    }
}

/// <summary>The shipped policy/file_contexts against the shipped policy.</summary>
[Collection(LibsepolCollection.Name)]
public sealed class ShippedFileContextsTests(PolicyFixture policy)
{
    [Fact]
    public void Every_context_is_valid_in_the_standalone_policy()
    {
        var fc = FileContexts.Load(policy.FileContextsPath);
        fc.Validate(policy.Engine);
        Assert.Equal(5, fc.Entries.Count);
    }

    [Theory]
    [InlineData("/var/lib/csvmm/images/debian.img", "system_u:object_r:qemu_virtdisk_t")]
    [InlineData("/var/lib/csvmm/images/incoming/download.img", "system_u:object_r:untrusted_disk_t")]
    [InlineData("/var/lib/csvmm/untrusted/x.qcow2", "system_u:object_r:untrusted_disk_t")]
    [InlineData("/var/lib/csvmm/images/lost+found/#123", null)]
    [InlineData("/var/lib/csvmm/snapshots/vm1.snap", "system_u:object_r:qemu_snapshot_t")]
    [InlineData("/home/user/disk.img", null)]
    public void Shipped_mapping_labels_the_documented_directories(string path, string? context)
    {
        Assert.Equal(context, FileContexts.Load(policy.FileContextsPath).Lookup(path, FileKind.Regular).Context);
    }

    [Fact]
    public void Validate_rejects_a_context_the_policy_lacks()
    {
        var fc = FileContexts.Parse("/a system_u:object_r:qemu_virtdisk_t:s0\n", "levels");
        var e = Assert.Throws<SecurityPolicyException>(() => fc.Validate(policy.Engine));
        Assert.Equal(PolicyErrorKind.FileContextsInvalid, e.Kind);
        Assert.StartsWith("levels line 1: invalid security context", e.Message);
    }
}
