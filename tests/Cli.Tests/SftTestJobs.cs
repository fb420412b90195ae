using K2RL.Gym;
using K2RL.Trainer.Tests;

namespace K2RL.Cli.Tests;

/// <summary>
/// A tiny SFT job: a dataset of the Gym's own worked solutions (list_ops and arithmetic, train split; the test fixture
/// <see cref="SftFixture"/>), 2 × 2 records per step, held-out eval on 2 list_ops tasks every 2 steps.
/// </summary>
internal sealed class SftTestJobs : IDisposable
{
    public SftTestJobs(string initFrom, int steps = 4, int records = 12)
    {
        Dir = Path.Combine(Path.GetTempPath(), "k2rl-sft-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Dir);
        DataPath = SftFixture.Write(Path.Combine(Dir, "train.jsonl"),
            SftFixture.Records(GymRegistry.CreateDefault(), ["list_ops", "arithmetic"], [1], records / 2));
        JobPath = Path.Combine(Dir, "sft.yaml");
        File.WriteAllText(JobPath, $"""
            init_from: {initFrom}
            seed: 2
            data:
              path: {DataPath}
              held_out_records: 2
            seq_len: 192
            batch_size: 2
            grad_accum_steps: 2
            steps: {steps}
            optimizer:
              lr: 0.02
            eval:
              every: 2
              envs: [list_ops]
              tasks: 2
              difficulties: [1]
              max_tokens: 10            # as RlTestJobs' list_ops: the demo test compares the two
            checkpoint:
              every_steps: 2
              keep: 2
            """);
    }

    public string Dir { get; }

    public string DataPath { get; }

    public string JobPath { get; }

    public string RunDir(string name) => Path.Combine(Dir, name);

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
