using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Synthesis;

namespace K2RL.Trainer.Tests;

/// <summary>
/// Test data for SFT before the synthesis pipeline (<c>k2rl synth</c>) exists in this branch: one record per Gym task of
/// the TRAIN split, the task's prompt messages followed by its worked <see cref="GymTask.Solution"/> (for tool_use a
/// whole transcript in the chat format, parsed back into messages; tools as the environment declares them). Kept in
/// the tests on purpose: the real converter, with judges and provenance, is the synthesis pipeline's.
/// </summary>
internal static class SftFixture
{
    public static SftRecord Record(GymRegistry registry, string kind, long seed, int difficulty)
    {
        var task = registry.Generators[kind].Generate(seed, Split.Train, difficulty);
        var messages = task.PromptMessages().ToList();
        if (task.Solution.StartsWith(ChatTokens.ImAssistant, StringComparison.Ordinal))
        {
            if (!ChatFormat.TryParse(task.Solution, out var turns, out _, out string? error))
            {
                throw new InvalidOperationException($"{kind} seed {seed}: the solution transcript does not parse: {error}");
            }

            messages.AddRange(turns);
        }
        else
        {
            messages.Add(Message.AssistantText(task.Solution));
        }

        return new SftRecord
        {
            Id = $"{kind}-d{difficulty}-{seed}",
            Messages = messages,
            Tools = registry.GetEnvironment(kind).Tools ?? [],
            Env = kind,
            Difficulty = difficulty,
            Verdict = new SftVerdict(true, "fixture", "the generator's worked solution"),
        };
    }

    /// <summary><paramref name="perCell"/> records per (kind, difficulty), seeds from <paramref name="seedBase"/>, interleaved by kind.</summary>
    public static List<SftRecord> Records(GymRegistry registry, IReadOnlyList<string> kinds, IReadOnlyList<int> difficulties, int perCell, long seedBase = 0)
    {
        var records = new List<SftRecord>();
        for (int i = 0; i < perCell; i++)
        {
            foreach (int d in difficulties)
            {
                foreach (string kind in kinds)
                {
                    records.Add(Record(registry, kind, seedBase + i, d));
                }
            }
        }

        return records;
    }

    public static string Write(string path, IEnumerable<SftRecord> records)
    {
        File.WriteAllLines(path, records.Select(r => r.ToJsonLine()));
        return path;
    }
}
