namespace K2RL.Trainer.Pretraining;

/// <summary>Adapts the Gym's task generators to <see cref="DocumentGenerator"/>s (train split, chat-format documents).</summary>
internal static class GymDocuments
{
    public static IReadOnlyDictionary<string, DocumentGenerator> Generators() =>
        new Dictionary<string, DocumentGenerator>(StringComparer.Ordinal);
}
