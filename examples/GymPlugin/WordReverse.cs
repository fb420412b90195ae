using K2RL.Gym;

namespace Example.GymPlugin;

/// <summary>
/// The shortest way to a new environment: a task generator plus a verifier the Gym already has. The generator must be
/// deterministic in its seed and give each distinct task a canonical <see cref="GymTask.Id"/> (the split is derived
/// from it, so train and held-out never overlap).
/// </summary>
public sealed class WordReverseGenerator : TaskGenerator
{
    private static readonly string[] Letters = ["a", "e", "i", "o", "u", "k", "l", "m", "n", "r", "s", "t"];

    public override string Kind => "word_reverse";

    public override int MaxDifficulty => 4;

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        int length = 3 + 2 * difficulty;
        string word = "";
        for (int i = 0; i < length; i++)
        {
            word += rng.Pick(Letters);
        }

        string reversed = new(word.Reverse().ToArray());
        return new GymTask
        {
            Kind = Kind,
            Id = word,
            SystemPrompt = "End your reply with a line 'Answer: <text>'.",
            Prompt = $"Spell '{word}' backwards.",
            Answer = reversed,
            Solution = $"Reading '{word}' from the last letter to the first gives '{reversed}'.\nAnswer: {reversed}",
        };
    }
}

/// <summary>Registers the plugin's environments. The Gym calls every <see cref="IGymPlugin"/> in a loaded assembly.</summary>
public sealed class Plugin : IGymPlugin
{
    public void Register(GymRegistry registry)
    {
        var generator = new WordReverseGenerator();
        registry.AddEnvironment("word_reverse", "Spell a made-up word backwards (example plugin)",
            _ => new TaskEnvironment("word_reverse", generator, new GuardedVerifier(new ExactMatchVerifier())), generator);
    }
}
