using K2RL.Common;

namespace K2RL.Gym;

/// <summary>Makes one training document of a task kind from a seed and a difficulty.</summary>
public delegate string DocumentGenerator(long seed, int difficulty);

/// <summary>
/// The synthetic pretraining corpus: task kinds whose documents are a task's prompt and worked solution in the chat
/// format (tool-use tasks with their tool declarations and a whole transcript of calls and results). Only the train
/// split is drawn, so held-out tasks stay held out for evaluation. Deterministic: the same kind, seed and difficulty
/// give the same text.
/// </summary>
public sealed class SyntheticCorpus(IReadOnlyDictionary<string, DocumentGenerator> generators)
{
    public IReadOnlyDictionary<string, DocumentGenerator> Generators { get; } = generators;

    public IReadOnlyCollection<string> Kinds => Generators.Keys.ToArray();

    /// <summary>The corpus of the built-in environments (<see cref="GymRegistry.CreateDefault"/>).</summary>
    public static SyntheticCorpus CreateDefault() => FromRegistry(GymRegistry.CreateDefault());

    /// <summary>A document generator for every environment of <paramref name="registry"/> that has a task generator.</summary>
    public static SyntheticCorpus FromRegistry(GymRegistry registry)
    {
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

        return new SyntheticCorpus(result);
    }

    /// <summary>The generator of <paramref name="kind"/>; an unknown kind is a <see cref="ConfigException"/> naming the known ones.</summary>
    public DocumentGenerator Generator(string kind) =>
        Generators.TryGetValue(kind, out var generate)
            ? generate
            : throw new ConfigException($"synthetic task \"{kind}\" is not available (have: {string.Join(", ", Kinds)})");
}
