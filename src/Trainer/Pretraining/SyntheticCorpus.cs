namespace K2RL.Trainer.Pretraining;

/// <summary>Makes one training document of a task kind from a seed and a difficulty.</summary>
public delegate string DocumentGenerator(long seed, int difficulty);

/// <summary>
/// The built-in synthetic corpus: task kinds with worked solutions, rendered as chat documents. Only the Gym's
/// train split is drawn, so held-out tasks stay held out for evaluation.
/// </summary>
public sealed class SyntheticCorpus
{
    public SyntheticCorpus(IReadOnlyDictionary<string, DocumentGenerator> generators)
    {
        Generators = generators;
    }

    public IReadOnlyDictionary<string, DocumentGenerator> Generators { get; }

    public IReadOnlyCollection<string> Kinds => Generators.Keys.ToArray();

    /// <summary>The corpus made by the Gym's task generators.</summary>
    public static SyntheticCorpus FromGym() => new(GymDocuments.Generators());
}
