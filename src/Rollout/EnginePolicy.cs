using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Model.Tokenization;

namespace K2RL.Rollout;

/// <summary>How an <see cref="EnginePolicy"/> samples.</summary>
public sealed record EnginePolicyOptions
{
    /// <summary>0: greedy.</summary>
    public float Temperature { get; init; } = 1f;

    public float TopP { get; init; } = 1f;

    public int TopK { get; init; }

    /// <summary>The token budget of one assistant turn.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>
    /// Every request's random stream is seeded from this, the task, the sample and the turn, so an episode's
    /// actions do not depend on what else shares the batch.
    /// </summary>
    public ulong Seed { get; init; }
}

/// <summary>Counts of what an <see cref="EnginePolicy"/> generated, for reports.</summary>
public sealed record EnginePolicyStats(long Turns, long Tokens, long Truncated, long Errors, TimeSpan Elapsed)
{
    /// <summary>Generated tokens per second of wall time spent generating.</summary>
    public double TokensPerSecond => Elapsed > TimeSpan.Zero ? Tokens / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// The Gym's <see cref="IPolicy"/> over the rollout engine. A batch of requests is rendered with the tokenizer's chat
/// format (tool declarations first when there are tools), submitted together, stepped until all end, and decoded
/// (special tokens such as tool-call markers come back as their text, so the Gym's parsers read them).
/// <para>Multi-turn episodes are token-in, token-out: the policy keeps each episode's token sequence (keyed by task
/// and sample) and on the next turn appends only the new messages' tokens and the assistant header to it, never
/// re-tokenizing the history. A response cut by its budget is closed with <c>&lt;|im_end|&gt;</c> before the next
/// turn. A request the engine refuses (e.g. the conversation no longer fits the context) gets an empty action and
/// is counted in <see cref="Stats"/>.</para>
/// </summary>
public sealed class EnginePolicy : IPolicy
{
    private readonly RolloutEngine engine;
    private readonly BpeTokenizer tokenizer;
    private readonly EnginePolicyOptions options;
    private readonly int[] stops;
    private readonly int imEnd;
    private readonly Dictionary<(int Task, int Sample), EpisodeTokens> episodes = [];
    private readonly SemaphoreSlim gate = new(1, 1);
    private long turns, tokens, truncated, errors;
    private TimeSpan elapsed;

    public EnginePolicy(RolloutEngine engine, BpeTokenizer tokenizer, EnginePolicyOptions? options = null)
    {
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.options = options ?? new EnginePolicyOptions();
        imEnd = tokenizer.SpecialTokenId(ChatTokens.ImEnd);
        stops = StopTokens(tokenizer);
        var probe = new SamplingParams { Temperature = this.options.Temperature, TopP = this.options.TopP, TopK = this.options.TopK, MaxTokens = this.options.MaxTokens };
        if (probe.Problem(engine.Decoder.VocabSize) is { } problem)
        {
            throw new K2RL.Common.ConfigException(problem);
        }
    }

    public EnginePolicyStats Stats => new(turns, tokens, truncated, errors, elapsed);

    /// <summary>Why the engine last refused a request, for logs.</summary>
    public string? LastError { get; private set; }

    /// <summary>The token sequence (prompt and responses so far) of an episode, or null when the policy has none.</summary>
    public IReadOnlyList<int>? EpisodeTokensOf(int task, int sample) =>
        episodes.TryGetValue((task, sample), out var e) ? e.Tokens : null;

    /// <summary>Forgets every episode's tokens.</summary>
    public void Clear() => episodes.Clear();

    public async Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default)
    {
        await gate.WaitAsync(ct);
        try
        {
            var prompts = new List<int[]>(requests.Count);
            var states = new List<EpisodeTokens>(requests.Count);
            foreach (var r in requests)
            {
                var state = Continue(r);
                states.Add(state);
                prompts.Add([.. state.Tokens]);
            }

            var results = await Task.Run(() => EngineBatch.Run(engine, prompts, i => Sampling(requests[i], states[i].Turn), ct), ct);
            var actions = new string[requests.Count];
            for (int i = 0; i < requests.Count; i++)
            {
                var r = results[i];
                var state = states[i];
                turns++;
                if (r.FinishReason == FinishReason.Error)
                {
                    errors++;
                    LastError = r.Error;
                    episodes.Remove((requests[i].Task, requests[i].Sample));
                    actions[i] = "";
                    continue;
                }

                var ids = r.TokenIds;
                tokens += ids.Length;
                truncated += r.Truncated ? 1 : 0;
                state.Tokens.AddRange(ids);
                (actions[i], bool close) = EndTurn(tokenizer, ids, stops);
                if (close)
                {
                    state.Tokens.Add(imEnd);   // close the turn so the next message starts a new one
                }

                state.Messages = requests[i].Conversation.Count + 1;   // the caller appends our action next
                state.LastAction = actions[i];
                state.Turn++;
            }

            elapsed += results.Elapsed;
            return actions;
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>The episode's sequence with this request's new messages and the assistant header appended.</summary>
    private EpisodeTokens Continue(PolicyRequest r)
    {
        var key = (r.Task, r.Sample);
        if (episodes.TryGetValue(key, out var state) && state.Messages > 0 && state.Messages <= r.Conversation.Count
            && r.Conversation[state.Messages - 1] is { Role: Role.Assistant } said && said.Content == state.LastAction)
        {
            state.Tokens.AddRange(MessageTokens(tokenizer, r.Conversation.Skip(state.Messages)));
        }
        else
        {
            state = new EpisodeTokens();
            state.Tokens.AddRange(PromptTokens(tokenizer, r.Conversation, r.Tools));
            episodes[key] = state;
        }

        state.Tokens.AddRange(ChatEncoder.GenerationPrompt(tokenizer));
        return state;
    }

    private SamplingParams Sampling(PolicyRequest r, int turn) => new()
    {
        Temperature = options.Temperature,
        TopP = options.TopP,
        TopK = options.TopK,
        MaxTokens = options.MaxTokens,
        StopTokens = stops,
        Seed = EngineBatch.Mix(options.Seed, (ulong)r.Task, (ulong)r.Sample, (ulong)turn),
    };

    /// <summary>The tokens that open an episode: the tool declarations when there are tools, then the messages (no generation prompt).</summary>
    internal static List<int> PromptTokens(BpeTokenizer tokenizer, IReadOnlyList<Message> messages, IReadOnlyList<ToolSpec> tools) =>
        [.. ChatEncoder.Encode(tokenizer, messages, tools)];

    /// <summary>The tokens of messages appended to an episode's sequence (observations), each encoded alone.</summary>
    internal static IEnumerable<int> MessageTokens(BpeTokenizer tokenizer, IEnumerable<Message> messages) =>
        messages.SelectMany(m => ChatEncoder.EncodeMessage(tokenizer, m));

    /// <summary>
    /// A generated turn's action text (its stop token left out; other special tokens as their text), and whether the
    /// sequence needs an <c>&lt;|im_end|&gt;</c> to close the turn (it did not end with a stop token).
    /// </summary>
    internal static (string Action, bool NeedsClose) EndTurn(BpeTokenizer tokenizer, int[] ids, int[] stops)
    {
        bool stopped = ids.Length > 0 && stops.Contains(ids[^1]);
        return (tokenizer.Decode(ids.AsSpan(0, stopped ? ids.Length - 1 : ids.Length)), !stopped);
    }

    internal static int[] StopTokens(BpeTokenizer tokenizer) =>
        new[] { ChatTokens.ImEnd, SpecialTokens.EndOfText }
            .Where(tokenizer.SpecialTokenIds.ContainsKey).Select(tokenizer.SpecialTokenId).ToArray();

    private sealed class EpisodeTokens
    {
        public List<int> Tokens { get; } = [];

        /// <summary>Messages of the conversation already in <see cref="Tokens"/> (the policy's own action included).</summary>
        public int Messages { get; set; }

        public int Turn { get; set; }

        public string LastAction { get; set; } = "";
    }
}

/// <summary>Results of one batch, in submission order, and the wall time the engine took.</summary>
internal sealed class BatchResults(IReadOnlyList<GenerationResult> results, TimeSpan elapsed)
{
    public GenerationResult this[int i] => results[i];

    public int Count => results.Count;

    public TimeSpan Elapsed { get; } = elapsed;
}

/// <summary>
/// Submits prompts to an engine together and steps it until they all end. Holds the engine's lock meanwhile, so a
/// policy and a judge may share one engine (their batches then run one after the other).
/// </summary>
internal static class EngineBatch
{
    public static BatchResults Run(RolloutEngine engine, IReadOnlyList<int[]> prompts, Func<int, SamplingParams> sampling,
        CancellationToken ct)
    {
        lock (engine)
        {
            return RunLocked(engine, prompts, sampling, ct);
        }
    }

    private static BatchResults RunLocked(RolloutEngine engine, IReadOnlyList<int[]> prompts, Func<int, SamplingParams> sampling,
        CancellationToken ct)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        var handles = new RequestHandle[prompts.Count];
        for (int i = 0; i < prompts.Count; i++)
        {
            handles[i] = engine.Submit(new GenerationRequest($"req-{i}", prompts[i], sampling(i)));
        }

        try
        {
            while (engine.HasWork)
            {
                ct.ThrowIfCancellationRequested();
                engine.Step();
            }
        }
        catch (OperationCanceledException)
        {
            foreach (var h in handles)
            {
                h.Cancel();
            }

            engine.RunUntilIdle();   // ends the cancelled requests and frees their blocks
            throw;
        }

        return new BatchResults(handles.Select(h => h.Result!).ToList(), System.Diagnostics.Stopwatch.GetElapsedTime(start));
    }

    /// <summary>A well-mixed 64-bit seed from several values (SplitMix64 finalizer over each).</summary>
    public static ulong Mix(params ulong[] values)
    {
        ulong h = 0x9E3779B97F4A7C15;
        foreach (ulong v in values)
        {
            h ^= v + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2);
            h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9;
            h = (h ^ (h >> 27)) * 0x94D049BB133111EB;
            h ^= h >> 31;
        }

        return h;
    }
}
