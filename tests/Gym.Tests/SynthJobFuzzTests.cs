using K2RL.Gym.Synthesis;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// Fuzzes the shipped synthesis job (configs/jobs/synth-nano.yaml), edited line by line from a fixed seed: each case
/// must load or be refused with a K2RL error naming the file, within 10 s and 256 MiB.
/// </summary>
public sealed class SynthJobFuzzTests
{
    [Fact]
    public void EveryEditedSynthJobLoadsOrIsRefusedNamingTheFile()
    {
        string text = File.ReadAllText(Path.Combine(ExternalTools.RepoRoot(), "configs", "jobs", "synth-nano.yaml"));
        string file = Path.Combine(Path.GetTempPath(), $"k2rl-fuzz-{Guid.NewGuid():N}-synth-nano.yaml");
        var known = SynthesisPipeline.KnownEnvs(GymRegistry.CreateDefault());
        int cases = Fuzz.Cases(300);
        var (failures, loaded) = Fuzz.YamlCases(text, file, "synth-nano.yaml", cases, edited => SynthJob.Parse(edited, file, known));
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(loaded, 1, cases - 1);
    }
}
