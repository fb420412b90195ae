using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

/// <summary>A tiny pretraining job (k2-test with a byte-level vocabulary) on the Gym's synthetic corpus.</summary>
internal sealed class PretrainTestJobs : IDisposable
{
    public PretrainTestJobs(int steps = 30, int every = 5, string optimizer = "muonclip", int gradAccum = 1)
    {
        Dir = Path.Combine(Path.GetTempPath(), "k2rl-pretrain-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Dir);
        string model = File.ReadAllText(Path.Combine(ExternalTools.RepoRoot(), "configs/models/k2-test.json"))
            .Replace("\"vocab_size\": 64", "\"vocab_size\": 272");
        File.WriteAllText(Path.Combine(Dir, "model.json"), model);
        JobPath = Path.Combine(Dir, "job.yaml");
        File.WriteAllText(JobPath, $"""
            model: model.json
            tokenizer: bytes
            seed: 11
            batch_size: 4
            seq_len: 32
            steps: {steps}
            grad_accum_steps: {gradAccum}
            optimizer:
              kind: {optimizer}
              lr: 0.02
            schedule:
              kind: wsd
              warmup_steps: 3
            data:
              synthetic: [arithmetic, countdown, list_ops]
            checkpoint:
              every_steps: {every}
              keep: 2
            """);
    }

    public string Dir { get; }

    public string JobPath { get; }

    public string RunDir(string name) => Path.Combine(Dir, name);

    public static float[] Losses(string runDir) =>
        File.ReadLines(Path.Combine(runDir, "metrics.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetSingle())
            .ToArray();

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
