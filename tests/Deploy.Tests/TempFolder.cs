namespace K2RL.Deploy.Tests;

/// <summary>A fresh folder under the system temp directory, deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("k2rl-deploy-").FullName;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
