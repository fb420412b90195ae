using System.Xml.Linq;
using K2RL.Tests.Shared;

namespace K2RL.Common.Tests.Build;

/// <summary>
/// A fresh clone must restore on any machine: the repository's nuget.config may name only package
/// sources reachable by URL, never a folder that exists on one machine image (NU1301 elsewhere).
/// .ci/run also restores once with an empty NuGet home and cache to prove it end to end.
/// </summary>
public sealed class NuGetConfigTests
{
    [Fact]
    public void EverySourceIsAnHttpsUrlAndInheritedSourcesAreCleared()
    {
        string path = Path.Combine(ExternalTools.RepoRoot(), "nuget.config");
        var sources = XDocument.Load(path).Root!.Element("packageSources")
            ?? throw new InvalidOperationException("nuget.config has no <packageSources>");

        Assert.NotNull(sources.Element("clear"));
        var added = sources.Elements("add").ToList();
        Assert.NotEmpty(added);
        foreach (var add in added)
        {
            string value = add.Attribute("value")?.Value ?? "";
            Assert.True(
                Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps,
                $"nuget.config source '{add.Attribute("key")?.Value}' is '{value}', not an https URL");
        }
    }
}
