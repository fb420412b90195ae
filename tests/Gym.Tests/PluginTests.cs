using K2RL.Gym;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>Builds the example plugin project under examples/ with the real SDK and loads it by path from a job config.</summary>
public class PluginIntegrationTests
{
    private static readonly Lazy<string> PluginDll = new(Build);

    private static string Build()
    {
        string root = ExternalTools.RepoRoot();
        string output = Directory.CreateTempSubdirectory("gymplugin").FullName;
#if DEBUG
        const string configuration = "Debug";
#else
        const string configuration = "Release";
#endif
        ExternalTools.Run("dotnet",
            $"build examples/GymPlugin/GymPlugin.csproj -c {configuration} -p:BuildProjectReferences=false -p:GenerateDependencyFile=false " +
            $"-p:OutDir={output}/ -nologo -v:q -clp:NoSummary", TimeSpan.FromMinutes(4), root);
        return Path.Combine(output, "Example.GymPlugin.dll");
    }

    [Fact]
    public async Task LoadsTheExamplePluginFromAJobConfigAndPlaysItsEnvironments()
    {
        string dir = Directory.CreateTempSubdirectory("gymjob").FullName;
        string job = Path.Combine(dir, "job.yaml");
        File.WriteAllText(job, $"run: demo\ngym:\n  plugins:\n    - {PluginDll.Value}\n");
        var registry = GymConfig.Load(job).ApplyTo(GymRegistry.CreateDefault());
        Assert.Contains(registry.Environments, e => e.Name == "word_reverse");
        Assert.Contains(registry.Environments, e => e.Name == "guess_number");
        Assert.Contains("word_reverse", registry.Generators.Keys);

        await using var reverse = (TaskEnvironment)registry.CreateEnvironment("word_reverse");
        await reverse.ResetAsync(3, new ResetOptions { Difficulty = 2 });
        var step = await reverse.StepAsync(reverse.Task!.Solution);
        Assert.True(step.Info.Correct);

        // Binary search against the plugin's hand-written multi-turn environment, through the IEnvironment interface.
        var guess = registry.CreateEnvironment("guess_number");
        await guess.ResetAsync(17);
        int lo = 1, hi = 100;
        StepResult result;
        int turns = 0;
        do
        {
            int mid = (lo + hi) / 2;
            result = await guess.StepAsync(mid.ToString());
            string hint = result.Observation.Messages[0].Content;
            if (hint == "Higher.")
            {
                lo = mid + 1;
            }
            else if (hint == "Lower.")
            {
                hi = mid - 1;
            }

            turns++;
            if (turns == 2)
            {
                // Resume the episode from a snapshot in a fresh instance of the plugin's environment.
                byte[] snap = await guess.SnapshotAsync();
                var fresh = registry.CreateEnvironment("guess_number");
                await fresh.RestoreAsync(snap);
                await guess.CloseAsync();
                guess = fresh;
            }
        }
        while (!result.Done);

        await guess.CloseAsync();
        Assert.True(result.Info.Correct);
        Assert.True(result.Reward > 0);

        await using var other = registry.CreateEnvironment("guess_number");
        await other.ResetAsync(1);
        var bad = await other.StepAsync("fifty");
        Assert.Contains("not an integer", bad.Info.Error);
        Assert.False(bad.Done);
    }
}
