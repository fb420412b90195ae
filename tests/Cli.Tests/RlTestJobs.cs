using System.Text.Json.Nodes;
using K2RL.Model;

namespace K2RL.Cli.Tests;

/// <summary>
/// A tiny RL job: a random k2-test checkpoint (byte-level vocabulary, 512-token context) as the base, 2 prompts × 2
/// samples per iteration from arithmetic and list_ops, short budgets, PTX on, held-out eval on 2 tasks.
/// </summary>
internal sealed class RlTestJobs : IDisposable
{
    private readonly RandomCheckpoint checkpoint = new(
        ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 512 },
        seed: 5, prefix: "k2rl-rlbase-");

    /// <param name="rollout">more lines of the rollout section (each "key: value"), e.g. rollout.workers.</param>
    public RlTestJobs(int iterations = 4, int every = 2, long tokenBudget = 0, string extra = "", params string[] rollout)
    {
        Dir = Path.Combine(Path.GetTempPath(), "k2rl-rl-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Dir);
        JobPath = Path.Combine(Dir, "job.yaml");
        File.WriteAllText(JobPath, $"""
            init_from: {checkpoint.Dir}
            seed: 3
            iterations: {iterations}
            prompts_per_iteration: 2
            samples_per_prompt: 2
            envs:
              arithmetic: {"{"}weight: 1, difficulty: [1, 2], max_response_tokens: 12{"}"}
              list_ops: {"{"}weight: 1, difficulty: [1, 1], max_response_tokens: 10{"}"}
            objective:
              micro_batch_rows: 3
            ptx:
              lambda: 0.1
              batch_size: 2
              seq_len: 32
              data:
                synthetic: [arithmetic, list_ops]
            rollout:
              iteration_token_budget: {tokenBudget}
            {string.Concat(rollout.Select(r => "  " + r + "\n"))}
            critic:
              calibration_pairs: 1
              max_tokens: 4
            optimizer:
              lr: 0.01
            eval:
              every: 2
              tasks: 2
              difficulties: [1]
            checkpoint:
              every_iterations: {every}
              keep: 2
            {extra}
            """);
    }

    public string Dir { get; }

    public string JobPath { get; }

    public string BaseDir => checkpoint.Dir;

    public string RunDir(string name) => Path.Combine(Dir, name);

    /// <summary>The run's metrics lines without the timing fields (which differ between any two runs).</summary>
    public static string[] Deterministic(string runDir) =>
        File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Where(l => l.Trim().Length > 0).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            foreach (string f in K2RL.Trainer.Rl.RlMetrics.TimingFields)
            {
                o.Remove(f);
            }

            return o.ToJsonString();
        }).ToArray();

    public void Dispose()
    {
        checkpoint.Dispose();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
