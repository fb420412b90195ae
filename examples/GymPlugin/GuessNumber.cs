using System.Globalization;
using K2RL.Common.Chat;
using K2RL.Gym;

namespace Example.GymPlugin;

/// <summary>
/// A hand-written multi-turn environment: guess a hidden number in 1..100 with "higher"/"lower" hints. Deriving from
/// <see cref="EnvironmentBase"/> gives the bad-input checks (oversized actions, invalid encoding, steps after the end),
/// the turn limit and the snapshot header for free; the class adds its state and rules. The attribute registers it
/// when the assembly is loaded as a plugin.
/// </summary>
[GymEnvironment("guess_number", "Find a hidden number from higher/lower hints (example plugin)")]
public sealed class GuessNumberEnvironment : EnvironmentBase
{
    private int secret;
    private int guesses;

    public GuessNumberEnvironment()
        : base("guess_number", new EnvironmentLimits { MaxTurns = 10, MaxActionChars = 200 })
    {
    }

    protected override ValueTask<Observation> OnResetAsync(CancellationToken ct)
    {
        var rng = new GymRandom(GymRandom.Mix(Seed, (ulong)Options.Split, Name));
        secret = rng.Next(1, 101);
        guesses = 0;
        return ValueTask.FromResult(Observation.Of(
            Message.SystemText("Reply with one integer per turn."),
            Message.UserText("I am thinking of a number from 1 to 100. Guess it.")));
    }

    protected override ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct)
    {
        if (!int.TryParse(action.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int guess))
        {
            return ValueTask.FromResult(Invalid($"'{action.Trim()}' is not an integer"));
        }

        guesses++;
        if (guess == secret)
        {
            // Fewer guesses, more reward: 1 for a first-try hit, down to 0.1.
            double reward = Math.Max(0.1, 1.0 - 0.1 * (guesses - 1));
            return ValueTask.FromResult(new StepResult(Observation.Of(Message.UserText("Correct!")), reward, true, false,
                new StepInfo { Correct = true }));
        }

        string hint = guess < secret ? "Higher." : "Lower.";
        return ValueTask.FromResult(new StepResult(Observation.Of(Message.UserText(hint)), 0, false, false, StepInfo.None));
    }

    protected override void WriteState(SnapshotWriter w) => w.Write(secret).Write(guesses);

    protected override void ReadState(SnapshotReader r)
    {
        secret = r.ReadInt32();
        guesses = r.ReadInt32();
    }
}
