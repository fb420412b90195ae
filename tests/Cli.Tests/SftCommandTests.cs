using System.Text.Json.Nodes;
using K2RL.Model.IO;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl sft</c> end to end on a tiny random base: the run directory, resume, plots, bad input named by file:line,
/// an SFT run as the RL job's init_from, and <c>k2rl demo</c> running pretrain → SFT → RL.
/// </summary>
public class SftCommandTests
{
    private static async Task<(int Code, string Out, string Err)> Cli(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(output, error));
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task Sft_RunsAndResumes_PlotDrawsIt_AndTheRlJobStartsFromTheSftRun()
    {
        K2RL.Tests.Shared.ExternalTools.RequireFonts();
        using var rl = new RlTestJobs(iterations: 1);
        using var sft = new SftTestJobs(rl.BaseDir);
        string run = sft.RunDir("sft");
        var (code, stdout, stderr) = await Cli("sft", "--job", sft.JobPath, "--run-dir", run, "--max-steps", "2");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal("maxsteps", json["reason"]!.GetValue<string>());
        Assert.NotNull(json["held_out"]?["list_ops/d1"]);
        Assert.Equal(12, json["data"]!["records"]!.GetValue<int>());
        Assert.Equal(2, json["data"]!["held_out"]!.GetValue<int>());
        Assert.Equal(12, json["data"]!["train"]!.GetValue<int>() + 2 + json["data"]!["dropped"]!.GetValue<int>() + json["data"]!["no_trained_tokens"]!.GetValue<int>());
        (code, stdout, stderr) = await Cli("sft", "--job", sft.JobPath, "--run-dir", run, "--resume");
        Assert.True(code == 0, stderr);
        Assert.Equal("completed", JsonNode.Parse(stdout)!["reason"]!.GetValue<string>());
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
        Assert.True(File.Exists(Path.Combine(run, "logs", "sft.clef")));
        var messages = File.ReadAllLines(Path.Combine(run, "logs", "sft.clef"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("@m").GetString()!).ToList();
        Assert.Contains(messages, m => m.StartsWith("SFT data ", StringComparison.Ordinal) && m.Contains(" truncated (") && m.Contains(" dropped"));
        Assert.Contains("SFT from step 2 to 4", messages);

        (code, stdout, _) = await Cli("plot", "--run-dir", run);
        Assert.Equal(0, code);
        foreach (string chart in new[] { "loss", "max_logit", "held_out_loss", "held_out_accuracy" })
        {
            Assert.Contains(Path.Combine(run, "plots", chart + ".png"), stdout);
        }

        // The RL job file's init_from names the SFT run directory: it starts from the SFT run's newest checkpoint.
        File.WriteAllText(rl.JobPath, File.ReadAllText(rl.JobPath).Replace($"init_from: {rl.BaseDir}", $"init_from: {run}"));
        string rlRun = rl.RunDir("rl");
        (code, stdout, stderr) = await Cli("rl", "--job", rl.JobPath, "--run-dir", rlRun);
        Assert.True(code == 0, stderr);
        string sftCheckpoint = CheckpointPath.Resolve(run);
        Assert.EndsWith(Path.Combine("checkpoints", "step-4"), sftCheckpoint);
        Assert.Contains($"# base: {sftCheckpoint}", File.ReadAllText(Path.Combine(rlRun, "config.yaml")));
        var rlState = JsonNode.Parse(File.ReadAllText(Path.Combine(rlRun, "checkpoints", "step-1", "rl_state.json")))!;
        Assert.Equal(sftCheckpoint, rlState["base_checkpoint"]!.GetValue<string>());
    }

    [Fact]
    public async Task Sft_ABadDatasetLine_IsAnErrorNamingFileAndLine_BeforeAnyWork()
    {
        using var rl = new RlTestJobs();
        using var sft = new SftTestJobs(rl.BaseDir);
        var lines = File.ReadAllLines(sft.DataPath).ToList();
        lines[2] = lines[2].Replace("\"messages\"", "\"mesages\"");   // line 3: a misspelt field
        File.WriteAllLines(sft.DataPath, lines);
        string run = sft.RunDir("never");
        var (code, stdout, stderr) = await Cli("sft", "--job", sft.JobPath, "--run-dir", run);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains($"{sft.DataPath}:3", stderr);
        Assert.Contains("mesages", stderr);
        Assert.False(Directory.Exists(run), "nothing may be written for a rejected dataset");

        lines[2] = "{\"id\": \"x\", \"messages\": [";                 // not JSON
        File.WriteAllLines(sft.DataPath, lines);
        (code, _, stderr) = await Cli("sft", "--job", sft.JobPath, "--run-dir", run);
        Assert.Equal(1, code);
        Assert.Contains($"{sft.DataPath}:3", stderr);
        Assert.Contains("not valid JSON", stderr);
    }

    [Fact]
    public async Task Sft_JobFileErrors_NameTheFileAndLine_BeforeAnyWork()
    {
        using var rl = new RlTestJobs();
        using var sft = new SftTestJobs(rl.BaseDir);
        string text = File.ReadAllText(sft.JobPath);
        string run = sft.RunDir("never");
        foreach (var (bad, expected) in new[]
        {
            (text.Replace("batch_size: 2", "batch_size: two"), "batch_size"),
            (text + "\nepochz: 2\n", "unknown key \"epochz\""),
            (text.Replace(sft.DataPath, sft.DataPath + ".gone"), "data.path"),
            (text.Replace(rl.BaseDir, rl.BaseDir + "-gone"), "init_from"),
        })
        {
            File.WriteAllText(sft.JobPath, bad);
            var (code, _, stderr) = await Cli("sft", "--job", sft.JobPath, "--run-dir", run);
            Assert.Equal(1, code);
            Assert.Contains(sft.JobPath + ":", stderr);
            Assert.Contains(expected, stderr);
            Assert.False(Directory.Exists(run));
        }
    }

    [Fact]
    public async Task Demo_WithSft_SynthesizesItsDataFirst_ThenRunsSftThenRl()
    {
        using var pretrain = new PretrainTestJobs(steps: 3, every: 3);
        string model = Path.Combine(pretrain.Dir, "model.json");
        File.WriteAllText(model, File.ReadAllText(model).Replace("\"max_position_embeddings\": 64", "\"max_position_embeddings\": 512"));
        using var rl = new RlTestJobs(iterations: 1);
        using var sft = new SftTestJobs("unused-the-demo-sets-it", steps: 2);
        string synthJob = Path.Combine(sft.Dir, "synth.yaml");
        File.WriteAllText(synthJob, """
            seed: 4
            trajectories: 24
            envs:
              arithmetic: {weight: 1, difficulty: [1]}
              list_ops: {weight: 1, difficulty: [1]}
            """);
        string demo = Path.Combine(sft.Dir, "demo");
        var (code, stdout, stderr) = await Cli("demo", "--run-dir", demo, "--pretrain-job", pretrain.JobPath, "--sft", "--synth-job", synthJob,
            "--sft-job", sft.JobPath, "--rl-job", rl.JobPath);
        Assert.True(code == 0, stderr);
        string data = Path.Combine(demo, "sft-data");
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(data, "summary.json")))!;
        int kept = summary["kept"]!.GetValue<int>();
        Assert.InRange(kept, 1, 24);
        Assert.Equal(kept, K2RL.Gym.Synthesis.SftDataset.Read(data).Count);   // rejected.jsonl is not training data
        Assert.Contains($"data: {Path.GetFullPath(data)}", File.ReadAllText(Path.Combine(demo, "sft", "config.yaml")));
        var row = JsonNode.Parse(stdout)!["held_out"]!["list_ops/d1"]!;
        Assert.Equal(row["sft"]!.GetValue<double>(), row["before"]!.GetValue<double>());   // RL starts from the SFT weights
    }

    [Fact]
    public async Task Demo_WithSftData_RunsPretrainThenSftThenRl_AndReportsEachStage()
    {
        using var pretrain = new PretrainTestJobs(steps: 3, every: 3);
        // the SFT records are a few hundred bytes: give the tiny base a context that holds them
        string model = Path.Combine(pretrain.Dir, "model.json");
        File.WriteAllText(model, File.ReadAllText(model).Replace("\"max_position_embeddings\": 64", "\"max_position_embeddings\": 512"));
        using var rl = new RlTestJobs(iterations: 1);
        using var sft = new SftTestJobs("unused-the-demo-sets-it", steps: 2);
        string demo = Path.Combine(sft.Dir, "demo");
        var (code, stdout, stderr) = await Cli("demo", "--run-dir", demo, "--pretrain-job", pretrain.JobPath, "--sft-job", sft.JobPath,
            "--sft-data", sft.DataPath, "--rl-job", rl.JobPath);
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(Path.GetFullPath(Path.Combine(demo, "sft")), json["sft_run_dir"]!.GetValue<string>());
        Assert.StartsWith(Path.Combine(Path.GetFullPath(demo), "base", "checkpoints"), File.ReadAllLines(Path.Combine(demo, "sft", "config.yaml"))[1][8..]);
        Assert.Contains($"# base: {CheckpointPath.Resolve(Path.Combine(demo, "sft"))}", File.ReadAllText(Path.Combine(demo, "rl", "config.yaml")));
        var row = json["held_out"]!["list_ops/d1"]!;
        foreach (string stage in new[] { "base", "sft", "before", "after" })
        {
            Assert.NotNull(row[stage]);
        }

        Assert.Equal(row["sft"]!.GetValue<double>(), row["before"]!.GetValue<double>());   // RL starts from the SFT weights
        Assert.True(File.Exists(Path.Combine(demo, "sft", "held_out_base.json")));
        Assert.Contains("base ", stderr);

        // Run again with --resume: every stage is finished; the table is whole again (the base's figures read back).
        (code, stdout, stderr) = await Cli("demo", "--run-dir", demo, "--pretrain-job", pretrain.JobPath, "--sft-job", sft.JobPath,
            "--sft-data", sft.DataPath, "--rl-job", rl.JobPath, "--resume");
        Assert.True(code == 0, stderr);
        var again = JsonNode.Parse(stdout)!["held_out"]!["list_ops/d1"]!;
        Assert.Equal(row["base"]!.GetValue<double>(), again["base"]!.GetValue<double>());
        Assert.Equal(row["sft"]!.GetValue<double>(), again["sft"]!.GetValue<double>());
    }
}
