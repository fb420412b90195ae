using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Gym.Tasks;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

public class RegistryTests
{
    [Fact]
    public void ListsTheBuiltIns()
    {
        var r = GymRegistry.CreateDefault();
        Assert.Equal(["arithmetic", "code", "countdown", "list_ops", "tool_use"], r.Environments.Select(e => e.Name));
        Assert.All(r.Environments, e => Assert.False(string.IsNullOrWhiteSpace(e.Description)));
        Assert.Equal(["countdown", "degenerate", "exact", "format", "numeric", "unit_tests"], r.Verifiers);
        Assert.Contains("http", r.Judges);
        Assert.Equal(["arithmetic", "code", "countdown", "list_ops", "tool_use"], r.Generators.Keys.Order());
    }

    [Fact]
    public void UnknownNamesListWhatExists()
    {
        var r = GymRegistry.CreateDefault();
        var e = Assert.Throws<ConfigException>(() => r.CreateEnvironment("chess"));
        Assert.Contains("unknown environment 'chess'", e.Message);
        Assert.Contains("arithmetic", e.Message);
        Assert.Throws<ConfigException>(() => r.CreateVerifier("vibes"));
        Assert.Contains("endpoint", Assert.Throws<ConfigException>(() => r.CreateJudge("http")).Message);
        Assert.Throws<ConfigException>(() => r.AddEnvironment("arithmetic", "again", _ => null!));
    }

    [Fact]
    public async Task RegistersAnEnvironmentInCode()
    {
        var r = new GymRegistry();
        r.AddEnvironment("mine", "my env", _ => new TaskEnvironment("mine", new ArithmeticGenerator(), new NumericVerifier()));
        r.AddVerifier("mine", _ => new ExactMatchVerifier());
        await using var env = r.CreateEnvironment("mine");
        var obs = await env.ResetAsync(1);
        Assert.NotEmpty(obs.Messages);
        Assert.IsType<ExactMatchVerifier>(r.CreateVerifier("mine"));
    }

    [Fact]
    public void ConfigRejectsUnknownKeysWithTheLine()
    {
        string dir = Directory.CreateTempSubdirectory("gymcfg").FullName;
        string path = Path.Combine(dir, "job.yaml");
        File.WriteAllText(path, "model: k2-nano\ngym:\n  plugins: []\n  rubric: x\n");
        var e = Assert.Throws<ConfigException>(() => GymConfig.Load(path));
        Assert.StartsWith($"{path}:4:3", e.Message);
        Assert.Contains("unknown key \"gym.rubric\"", e.Message);
    }

    [Fact]
    public void ConfigLoadsRubricsRelativeToTheFile()
    {
        string root = ExternalTools.RepoRoot();
        string dir = Directory.CreateTempSubdirectory("gymcfg").FullName;
        File.WriteAllText(Path.Combine(dir, "job.yaml"), $"gym:\n  rubrics: {Path.Combine(root, "configs", "rubrics")}\n");
        var config = GymConfig.Load(Path.Combine(dir, "job.yaml"));
        var r = config.ApplyTo(GymRegistry.CreateDefault());
        Assert.Contains(r.Rubrics, x => x.Name == "no_initial_praise");
    }

    [Fact]
    public async Task ConfigRegistersRemoteEnvironments()
    {
        await using var server = await RemoteEnvironmentServer.StartAsync(GymRegistry.CreateDefault());
        string dir = Directory.CreateTempSubdirectory("gymcfg").FullName;
        string path = Path.Combine(dir, "job.yaml");
        File.WriteAllText(path, $"gym:\n  remotes:\n    - name: far_lists\n      address: {server.Address}\n      env: list_ops\n      step_timeout_s: 5\n");
        var registry = GymConfig.Load(path).ApplyTo(GymRegistry.CreateDefault());
        await using var env = registry.CreateEnvironment("far_lists");
        Assert.IsType<RemoteEnvironment>(env);
        await env.ResetAsync(4);
        var task = new ListOpsGenerator().Generate(4, Split.Train, 1);
        Assert.True((await env.StepAsync($"Answer: {task.Answer}")).Info.Correct);

        File.WriteAllText(path, "gym:\n  remotes:\n    - name: x\n      address: ftp://nope\n");
        Assert.StartsWith($"{path}:4:7: \"gym.remotes[0].address\" 'ftp://nope' is not an http:// URL",
            Assert.Throws<ConfigException>(() => GymConfig.Load(path)).Message);
    }

    [Fact]
    public void SyntheticCorpusDocumentsAreChatFormatAndDeterministic()
    {
        var corpus = SyntheticCorpus.FromRegistry(GymRegistry.CreateDefault());
        var toolUse = corpus.Generator("tool_use");
        var docs = Enumerable.Range(100, 5).Select(seed => toolUse(seed, 1 + seed % 3)).ToList();
        Assert.Equal(docs, Enumerable.Range(100, 5).Select(seed => toolUse(seed, 1 + seed % 3)).ToList());
        Assert.All(docs, d => Assert.StartsWith("<|im_system|>tool_declare<|im_middle|>", d));
        Assert.All(docs, d => Assert.Contains("functions.calculator:", d));
        var arithmetic = corpus.Generator("arithmetic")(0, 1);
        Assert.Contains("<|im_assistant|>assistant<|im_middle|>", arithmetic);
        Assert.EndsWith("<|im_end|>", arithmetic);
        Assert.Throws<ConfigException>(() => corpus.Generator("poetry"));
    }

    [Fact]
    public void MissingPluginIsAConfigError()
    {
        var e = Assert.Throws<ConfigException>(() => GymRegistry.CreateDefault().LoadPlugin("/nonexistent/plugin.dll"));
        Assert.Contains("not found", e.Message);
    }
}
