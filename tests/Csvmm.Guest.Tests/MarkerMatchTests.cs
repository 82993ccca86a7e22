namespace Csvmm.Guest.Tests;

/// <summary><see cref="CsvmmRun.FindSubsequence"/>: markers on a console two writers share.</summary>
public sealed class MarkerMatchTests
{
    [Theory]
    [InlineData("xx SYSLINUX yy", "SYSLINUX", 11)]                     // contiguous
    [InlineData("SSYYSSLLIINNUUXX", "SYSLINUX", 15)]                  // two copies interleaved byte by byte
    [InlineData("Loading /bzLoading /bzImage...Image", "Loading /bzImage", 27)]   // a second copy in the middle
    public void InterleavedCopiesMatch(string text, string marker, int end) =>
        Assert.Equal(end, CsvmmRun.FindSubsequence(text, marker, 0));

    [Theory]
    [InlineData("SYSLINU", "SYSLINUX")]                                // incomplete
    [InlineData("S........................................YSLINUX", "SYSLINUX")] // spread far beyond the window
    [InlineData("XUNILSYS", "SYSLINUX")]                               // out of order
    public void ScatteredOrMissingTextDoesNot(string text, string marker) =>
        Assert.Equal(-1, CsvmmRun.FindSubsequence(text, marker, 0));

    [Fact]
    public void TheSearchStartsAtTheGivenOffset() =>
        Assert.Equal(-1, CsvmmRun.FindSubsequence("SYSLINUX then other text", "SYSLINUX", 1));
}
