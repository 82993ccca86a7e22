using Csvmm.Security;

namespace Csvmm.Security.Tests;

public sealed class FormatTests
{
    [Theory]
    [InlineData("/var/lib/csvmm/images/a.img", "\"/var/lib/csvmm/images/a.img\"")]
    [InlineData("/a b", "2F612062")]           // space: hex, like audit_log_untrustedstring
    [InlineData("/a\"b", "2F612262")]
    [InlineData("/é", "2FC3A9")]
    public void Untrusted_strings_are_quoted_or_hex(string value, string logged)
    {
        Assert.Equal(logged, AvcFormat.Untrusted(value));
    }

    [Fact]
    public void Avc_line_has_the_user_avc_shape()
    {
        Assert.Equal(
            "avc:  denied  { entrypoint } for  pid=9 comm=\"csvmm\" path=\"/d.img\" scontext=a:b:c tcontext=d:e:f tclass=vm permissive=1",
            AvcFormat.Line(false, ["entrypoint"], new AvcOrigin(9, "csvmm"), "/d.img", "a:b:c", "d:e:f", "vm", permissive: true));
    }

    [Theory]
    [InlineData("u:r:t", "u", "r", "t", null)]
    [InlineData("system_u:object_r:qemu_virtdisk_t:s0", "system_u", "object_r", "qemu_virtdisk_t", "s0")]
    [InlineData("u:r:t:s0-s0:c0.c1023", "u", "r", "t", "s0-s0:c0.c1023")]
    public void Contexts_parse(string text, string user, string role, string type, string? level)
    {
        var c = SecurityContext.Parse(text);
        Assert.Equal(new SecurityContext(user, role, type, level), c);
        Assert.Equal(text, c.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("u:r")]
    [InlineData("u::t")]
    [InlineData("u:r:t:")]
    [InlineData("u:r:t\n")]
    [InlineData("u:r:t\0")]
    [InlineData("ü:r:t")]
    public void Malformed_contexts_do_not_parse(string text)
    {
        Assert.False(SecurityContext.TryParse(text, out _));
        Assert.Equal(PolicyErrorKind.InvalidContext, Assert.Throws<SecurityPolicyException>(() => SecurityContext.Parse(text)).Kind);
    }
}
