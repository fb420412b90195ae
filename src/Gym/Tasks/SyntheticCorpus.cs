namespace K2RL.Gym;

/// <summary>
/// Documents for the synthetic pretraining corpus: each a task's prompt and worked solution in the chat format
/// (tool-use tasks with their tool declarations and a whole transcript of calls and results).
/// </summary>
public static class SyntheticCorpus
{
    /// <summary>
    /// <paramref name="count"/> training-split documents of one task kind, seeds <paramref name="firstSeed"/> onward,
    /// difficulties cycling 1..<paramref name="maxDifficulty"/>. Deterministic: the same arguments give the same text.
    /// </summary>
    public static IEnumerable<string> Documents(GymRegistry registry, string kind, long firstSeed, int count, int maxDifficulty = 3)
    {
        var entry = registry.Environments.FirstOrDefault(e => e.Generator?.Kind == kind)
                    ?? throw new K2RL.Common.ConfigException($"no task generator of kind '{kind}' (have: {string.Join(", ", registry.Generators.Keys)})");
        var generator = entry.Generator!;
        int top = Math.Clamp(maxDifficulty, 1, generator.MaxDifficulty);
        for (int i = 0; i < count; i++)
        {
            var task = generator.Generate(firstSeed + i, Split.Train, 1 + i % top);
            yield return task.ToChatDocument(entry.Tools);
        }
    }
}
