using K2RL.Gym;

namespace K2RL.Trainer.Pretraining;

/// <summary>
/// Adapts the Gym's task generators to <see cref="DocumentGenerator"/>s: each document is a train-split task rendered
/// as a chat transcript (system prompt, user prompt, worked solution; the tool task with its tool specs and calls).
/// </summary>
internal static class GymDocuments
{
    public static IReadOnlyDictionary<string, DocumentGenerator> Generators()
    {
        var registry = GymRegistry.CreateDefault();
        var result = new Dictionary<string, DocumentGenerator>(StringComparer.Ordinal);
        foreach (var entry in registry.Environments)
        {
            if (entry.Generator is not { } generator)
            {
                continue;
            }

            var tools = entry.Tools;
            result[generator.Kind] = (seed, difficulty) =>
                generator.Generate(seed, Split.Train, Math.Min(difficulty, generator.MaxDifficulty)).ToChatDocument(tools);
        }

        return result;
    }
}
