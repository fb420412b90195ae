using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using K2RL.Common;
using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>A program test: feed <see cref="Stdin"/>, expect exactly <see cref="ExpectedStdout"/> (trailing whitespace ignored).</summary>
public sealed record TestCase(string Stdin, string ExpectedStdout);

/// <summary>
/// One generated task. <see cref="Id"/> is canonical (equal tasks have equal ids) and decides the split.
/// <see cref="Solution"/> is a worked solution in the assistant's voice, ending with the answer line, so the same
/// generators make the synthetic pretraining corpus (for the tool task it is a whole transcript in the chat format).
/// </summary>
public sealed record GymTask
{
    public required string Kind { get; init; }

    public required string Id { get; init; }

    public Split Split { get; init; }

    public int Difficulty { get; init; } = 1;

    public string? SystemPrompt { get; init; }

    public required string Prompt { get; init; }

    /// <summary>The reference answer as the verifier compares it.</summary>
    public required string Answer { get; init; }

    public required string Solution { get; init; }

    /// <summary>
    /// A finer-grained worked solution where the generator has one (every intermediate fact on its own line); the
    /// pretraining corpus uses <see cref="Solution"/>, synthesis either (its job's <c>solutions</c>).
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? DetailedSolution { get; init; }

    /// <summary>Task-specific facts verifiers read (numbers, target, interpreter, tolerance, lookup table).</summary>
    public IReadOnlyDictionary<string, string> Params { get; init; } = ResetOptions.EmptyMap;

    public IReadOnlyList<TestCase> Tests { get; init; } = [];

    /// <summary>The prompt as messages: the system prompt when there is one, then the user's.</summary>
    public IReadOnlyList<Message> PromptMessages() =>
        SystemPrompt is null ? [Message.UserText(Prompt)] : [Message.SystemText(SystemPrompt), Message.UserText(Prompt)];

    /// <summary>The task as one chat-format document: prompt then worked solution (for pretraining corpora).</summary>
    public string ToChatDocument(IReadOnlyList<ToolSpec>? tools = null)
    {
        var sb = new StringBuilder(ChatFormat.Render(PromptMessages(), tools));
        if (Solution.StartsWith(ChatTokens.ImAssistant, StringComparison.Ordinal))
        {
            sb.Append(Solution);
        }
        else
        {
            ChatFormat.RenderMessage(sb, Message.AssistantText(Solution));
        }

        return sb.ToString();
    }

    public string ToJson() => JsonSerializer.Serialize(this, GymJson.Options);

    public static GymTask FromJson(string json) =>
        JsonSerializer.Deserialize<GymTask>(json, GymJson.Options) ?? throw new JsonException("null task");
}

internal static class GymJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
    };
}

/// <summary>Makes tasks of one kind from a seed. Deterministic: the same (seed, split, difficulty) gives the same task.</summary>
public interface ITaskGenerator
{
    string Kind { get; }

    int MaxDifficulty { get; }

    GymTask Generate(long seed, Split split, int difficulty);
}

/// <summary>
/// Assigns every task to a split by a hash of its kind and canonical id: 1 in <see cref="HeldOutOneIn"/> tasks is
/// held out. Because the split is a function of the task's content, a train task can never equal a held-out one,
/// whatever the seeds.
/// </summary>
public static class SplitAssigner
{
    public const int HeldOutOneIn = 8;

    public static Split SplitOf(string kind, string id)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(kind + "\n" + id), hash);
        return BitConverter.ToUInt32(hash) % HeldOutOneIn == 0 ? Split.HeldOut : Split.Train;
    }
}

/// <summary>
/// Base for generators: draws candidates from a seeded <see cref="GymRandom"/> until one falls in the requested
/// split. Subclasses implement <see cref="Create"/>.
/// </summary>
public abstract class TaskGenerator : ITaskGenerator
{
    public abstract string Kind { get; }

    public virtual int MaxDifficulty => 5;

    public GymTask Generate(long seed, Split split, int difficulty)
    {
        difficulty = Math.Clamp(difficulty, 1, MaxDifficulty);
        var rng = new GymRandom(GymRandom.Mix(seed, (ulong)difficulty * 2 + (ulong)split, Kind));
        for (int attempt = 0; attempt < 10_000; attempt++)
        {
            var task = Create(ref rng, difficulty);
            if (SplitAssigner.SplitOf(Kind, task.Id) == split)
            {
                return task with { Split = split, Difficulty = difficulty };
            }
        }

        throw new InvalidOperationException($"{Kind}: no {split} task found at difficulty {difficulty} for seed {seed}");
    }

    /// <summary>One candidate task (its split is decided afterwards from its <see cref="GymTask.Id"/>).</summary>
    protected abstract GymTask Create(ref GymRandom rng, int difficulty);
}

/// <summary>The Gym's draws (ranges, picks, shuffles) over one <see cref="SplitMix64"/> stream.</summary>
public struct GymRandom
{
    private SplitMix64 stream;

    public GymRandom(ulong seed)
    {
        stream = new SplitMix64(seed);
    }

    public static ulong Mix(long seed, ulong stream, string salt)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in salt)
        {
            h = (h ^ c) * 1099511628211UL;
        }

        return new SplitMix64((ulong)seed ^ (stream * SplitMix64.Golden) ^ h).NextUInt64();
    }

    public ulong NextUInt64() => stream.NextUInt64();

    /// <summary>Uniform in [lo, hiExclusive).</summary>
    public long Next(long lo, long hiExclusive)
    {
        ulong range = (ulong)(hiExclusive - lo);
        return lo + (long)(NextUInt64() % range);
    }

    public int Next(int lo, int hiExclusive) => (int)Next((long)lo, hiExclusive);

    public double NextDouble() => stream.NextDouble();

    public T Pick<T>(IReadOnlyList<T> items) => items[Next(0, items.Count)];

    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = Next(0, i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A uniformly drawn number with exactly <paramref name="digits"/> decimal digits.</summary>
    public long NextWithDigits(int digits)
    {
        long lo = digits <= 1 ? 0 : (long)Math.Pow(10, digits - 1);
        long hi = (long)Math.Pow(10, digits);
        return Next(lo, hi);
    }
}
