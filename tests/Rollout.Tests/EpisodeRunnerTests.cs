using K2RL.Common;
using K2RL.Gym;
using K2RL.Model.Tokenization;
using K2RL.Common.Chat;
using K2RL.Rollout.Episodes;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary>
/// The token-level episode runner over the real engine, tokenizer and Gym environments, with the hash test decoder
/// (deterministic, prefill and decode give the same logits) nudged toward ending turns and opening tool calls.
/// </summary>
public class EpisodeRunnerTests
{
    private static readonly BpeTokenizer Tokenizer = BpeTokenizer.ByteLevel();
    private static readonly int ImEnd = Tokenizer.SpecialTokenId(ChatTokens.ImEnd);
    private static readonly int ToolSection = Tokenizer.SpecialTokenId(ChatTokens.ToolCallsSectionBegin);

    private static RolloutEngine Engine(int maxBatch = 8) =>
        new(new BiasDecoder(new HashDecoder(vocab: 272, maxContext: 2048, maxBatch: maxBatch, blockTokens: 16, blocks: 2048),
            new Dictionary<int, float> { [ImEnd] = 3.5f, [ToolSection] = 3f }),
            new EngineOptions { SampleableVocab = Tokenizer.VocabSize });

    private static GymRegistry Registry(CancellationTokenSource? cancel = null) =>
        GymRegistry.CreateDefault()
            .AddEnvironment("throws", "steps throw", _ => new MisbehavingEnv(new ArithmeticLike(), Misbehaviour.Throw, cancel))
            .AddEnvironment("hangs", "steps never return", _ => new MisbehavingEnv(new ArithmeticLike(), Misbehaviour.Hang, cancel))
            .AddEnvironment("cancels", "a step cancels the run", _ => new MisbehavingEnv(new ArithmeticLike(), Misbehaviour.Cancel, cancel));

    private static EpisodeRunner Runner(RolloutEngine engine, EpisodeOptions? options = null, GymRegistry? registry = null)
    {
        var r = registry ?? Registry();
        return new EpisodeRunner(engine, Tokenizer, r.CreateEnvironment, options ?? new EpisodeOptions { Seed = 7, MaxResponseTokens = 64 });
    }

    private static EpisodeRequest Req(string env, long task, int sample = 0) => new($"it0-{env}-{task}-s{sample}", env, task, 1, sample);

    private static Task<EpisodeBatch> Run(EpisodeRunner runner, IReadOnlyList<EpisodeRequest> fresh, long budget = long.MaxValue) =>
        runner.RunAsync(fresh, [], 1f, budget, CancellationToken.None);

    private static void AssertSame(Trajectory a, Trajectory b)
    {
        Assert.Equal(a.Id, b.Id);
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Equal(a.Generated, b.Generated);
        Assert.Equal(a.LogProbs, b.LogProbs);   // bit for bit
        Assert.Equal(a.Versions, b.Versions);
        Assert.Equal((a.Turns, a.ResponseTokens, a.Reward, a.Correct, a.Truncated, a.Failed), (b.Turns, b.ResponseTokens, b.Reward, b.Correct, b.Truncated, b.Failed));
        Assert.Equal(a.Conversation, b.Conversation);
    }

    /// <summary>
    /// The sequence is the prompt, then per turn: header, sampled tokens, a closing im_end when the turn did not end with
    /// one, and the next observation's tokens; each sampled run decodes to the conversation's assistant action.
    /// </summary>
    private static void AssertWellFormed(Trajectory t, int budget)
    {
        int n = t.Tokens.Length;
        Assert.Equal(n, t.Generated.Length);
        Assert.Equal(n, t.LogProbs.Length);
        Assert.Equal(n, t.Versions.Length);
        Assert.Equal(t.Generated.Count(g => g), t.ResponseTokens);
        Assert.InRange(t.ResponseTokens, 1, budget);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(t.Generated[i] ? 0L : -1L, t.Versions[i]);
            if (t.Generated[i])
            {
                Assert.True(t.LogProbs[i] <= 0 && float.IsFinite(t.LogProbs[i]));
            }
            else
            {
                Assert.Equal(0f, t.LogProbs[i]);
            }
        }

        Assert.All(t.Generated.Take(t.PromptTokens), Assert.False);
        int[] header = ChatEncoder.GenerationPrompt(Tokenizer);
        var assistant = t.Conversation.Where(m => m.Role == Role.Assistant).ToList();
        Assert.Equal(t.Turns, assistant.Count);
        var initial = t.Conversation.TakeWhile(m => m.Role != Role.Assistant).ToList();
        int at = t.PromptTokens, message = initial.Count;
        int[] messages = Expected(initial);   // after the tool declarations, when there are tools
        Assert.Equal(messages, t.Tokens[(at - messages.Length)..at]);
        for (int turn = 0; turn < t.Turns; turn++)
        {
            Assert.Equal(header, t.Tokens[at..(at + header.Length)]);
            at += header.Length;
            int start = at;
            while (at < n && t.Generated[at])
            {
                at++;
            }

            var sampled = t.Tokens[start..at];
            bool stopped = sampled[^1] == ImEnd;
            Assert.Equal(Tokenizer.Decode(stopped ? sampled[..^1] : sampled), assistant[turn].Content);
            if (!stopped)
            {
                Assert.Equal(ImEnd, t.Tokens[at++]);   // closed by the runner, not generated
            }

            message++;
            if (turn + 1 < t.Turns)
            {
                var observation = t.Conversation.Skip(message).TakeWhile(m => m.Role != Role.Assistant).ToList();
                int[] obs = observation.SelectMany(m => ChatEncoder.EncodeMessage(Tokenizer, m)).ToArray();
                Assert.Equal(obs, t.Tokens[at..(at + obs.Length)]);
                at += obs.Length;
                message += observation.Count;
            }
        }

        Assert.Equal(n, at);
    }

    private static int[] Expected(IReadOnlyList<Message> initial) =>
        ChatEncoder.Encode(Tokenizer, initial, addGenerationPrompt: false);

    [Fact]
    public async Task TrajectoriesAreTheEnginesTokensWithMaskLogProbsAndVersions()
    {
        var batch = await Run(Runner(Engine()), [Req("arithmetic", 1), Req("arithmetic", 2), Req("countdown", 3), Req("list_ops", 4)]);
        Assert.Empty(batch.Paused);
        Assert.Equal(4, batch.Finished.Count);
        Assert.Equal(batch.TokensGenerated, batch.Finished.Sum(t => t.ResponseTokens));
        Assert.All(batch.Finished, t => Assert.True(t.Reward < 0));   // random bytes: penalized as invalid actions
        foreach (var t in batch.Finished)
        {
            Assert.False(t.Failed, t.Error);
            AssertWellFormed(t, 64);
            Assert.False(string.IsNullOrEmpty(t.FirstPrompt));
        }
    }

    [Fact]
    public async Task AnEpisodesTokensDoNotDependOnTheBatch()
    {
        var alone = await Run(Runner(Engine(maxBatch: 1)), [Req("tool_use", 5)]);
        var shared = await Run(Runner(Engine(maxBatch: 8)), [Req("arithmetic", 9), Req("tool_use", 5), Req("tool_use", 6, sample: 1)]);
        AssertSame(alone.Finished[0], shared.Finished.Single(t => t.Id == alone.Finished[0].Id));

        // Another sample of the same task draws its own tokens.
        var other = await Run(Runner(Engine()), [Req("tool_use", 5, sample: 1)]);
        Assert.NotEqual(alone.Finished[0].Tokens, other.Finished[0].Tokens);
    }

    [Fact]
    public async Task ToolUseEpisodesTakeSeveralTurnsWithObservationsAppended()
    {
        var options = new EpisodeOptions { Seed = 3, MaxResponseTokens = 200, MaxTurns = 6 };
        var batch = await Run(Runner(Engine(), options), Enumerable.Range(0, 4).Select(i => Req("tool_use", 20 + i)).ToList());
        Assert.Contains(batch.Finished, t => t.Turns > 2);
        foreach (var t in batch.Finished)
        {
            Assert.False(t.Failed, t.Error);
            AssertWellFormed(t, 200);
            Assert.Equal(Tokenizer.SpecialTokenId(ChatTokens.ImSystem), t.Tokens[0]);   // tool declarations first
            Assert.InRange(t.Turns, 1, 6);
        }
    }

    [Fact]
    public async Task TheBudgetTruncatesAcrossTurns()
    {
        var options = new EpisodeOptions { Seed = 1, MaxResponseTokens = 6 };
        var batch = await Run(Runner(Engine(), options), Enumerable.Range(0, 6).Select(i => Req("tool_use", 40 + i)).ToList());
        Assert.Contains(batch.Finished, t => t.Truncated);
        foreach (var t in batch.Finished)
        {
            AssertWellFormed(t, 6);
            Assert.True(!t.Truncated || t.ResponseTokens == 6, $"{t.Id}: {t.ResponseTokens} tokens, truncated");
        }
    }

    [Fact]
    public async Task PausedEpisodesResumeInAnotherRunnerToTheUninterruptedTrajectories()
    {
        // 6 turns: with these seeds one episode is paused between turns (a turn ended on the budget's last step)
        var options = new EpisodeOptions { Seed = 11, MaxResponseTokens = 120, MaxTurns = 6 };
        var requests = new[] { Req("tool_use", 1), Req("tool_use", 2), Req("arithmetic", 3), Req("countdown", 4) };
        var whole = await Run(Runner(Engine(), options), requests);

        var finished = new List<Trajectory>();
        var batch = await Run(Runner(Engine(), options), requests, budget: 9);
        bool midTurn = false, betweenTurns = false;
        for (int call = 0; batch.Paused.Count > 0; call++)
        {
            Assert.True(call < 200, "the episodes never finish");
            finished.AddRange(batch.Finished);
            midTurn |= batch.Paused.Any(p => p.InFlight is { Tokens.Count: > 0 });
            betweenTurns |= batch.Paused.Any(p => p.InFlight is null && p.Turns > 0);
            var restored = batch.Paused.Select(p => PausedEpisode.FromJson(p.ToJson())).ToList();
            Assert.Equal(batch.Paused.Select(p => p.ToJson()), restored.Select(p => p.ToJson()));
            batch = await Runner(Engine(), options).RunAsync([], restored, 1f, 9, CancellationToken.None);
            Assert.Equal(restored.Count, batch.Resumed);
        }

        finished.AddRange(batch.Finished);
        Assert.True(midTurn && betweenTurns, $"paused mid-turn: {midTurn}, between turns: {betweenTurns}");
        Assert.Equal(requests.Length, finished.Count);
        foreach (var t in whole.Finished)
        {
            AssertSame(t, finished.Single(f => f.Id == t.Id));   // the hash decoder's prefill equals its decode: log-probs too
        }
    }

    [Fact]
    public async Task AThrowingOrHangingEnvironmentFailsOnlyItsEpisode()
    {
        var options = new EpisodeOptions { Seed = 2, MaxResponseTokens = 40, StepTimeout = TimeSpan.FromSeconds(1) };
        var good = new[] { Req("arithmetic", 1), Req("tool_use", 2) };
        var clean = await Run(Runner(Engine(), options), good);
        var mixed = await Run(Runner(Engine(), options), [Req("throws", 1), good[0], Req("hangs", 2), good[1], Req("nonexistent", 3)]);
        Assert.Equal(5, mixed.Finished.Count);
        Assert.Contains("threw", mixed.Finished.Single(t => t.Env == "throws").Error);
        Assert.Contains("timed out", mixed.Finished.Single(t => t.Env == "hangs").Error);
        Assert.Contains("nonexistent", mixed.Finished.Single(t => t.Env == "nonexistent").Error);
        Assert.All(mixed.Finished.Where(t => t.Env is "throws" or "hangs" or "nonexistent"), t => Assert.True(t.Failed));
        foreach (var t in clean.Finished)
        {
            AssertSame(t, mixed.Finished.Single(f => f.Id == t.Id));
        }
    }

    [Fact]
    public async Task MisbehavingRemoteEnvironmentsFailOrTruncateOnlyTheirEpisodes()
    {
        // nan, endless and hang served by a real Gym server over real sockets, with a good in-process env in the
        // same batch. The hung episodes end their first turns at different engine steps; the engine does not wait
        // for them, so together they cost about one step timeout.
        await using var server = await BrokenEnvironmentServer.StartAsync();
        var registry = server.ClientRegistry();
        var options = new EpisodeOptions { Seed = 5, MaxResponseTokens = 400, MaxTurns = 3, StepTimeout = TimeSpan.FromSeconds(3) };
        var requests = Enumerable.Range(0, 8).SelectMany(i => new[] { Req("nan", i), Req("endless", i), Req("hang", i) })
            .Append(Req("arithmetic", 1)).ToList();
        var clean = await Run(Runner(Engine(), options, registry), [Req("arithmetic", 1)]);
        // The first calls to a fresh server pay for its connection and JIT: under a loaded CI run, 4 of 8 first resets
        // once took over the step timeout. One episode of each answering env first, untimed, so the batch below
        // measures only the hung episodes.
        await Run(Runner(Engine(), options, registry), [Req("nan", 100), Req("endless", 100)]);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var batch = await Run(Runner(Engine(), options, registry), requests);

        Assert.True(watch.Elapsed < 8 * options.StepTimeout / 2, $"{watch.Elapsed} for 8 hung episodes of a {options.StepTimeout} step timeout");
        Assert.Equal(requests.Count, batch.Finished.Count);
        Assert.All(batch.Finished.Where(t => t.Env == "nan"), t =>
        {
            Assert.True(t.Failed);
            Assert.Contains("'nan' step 1 returned a non-finite reward (NaN)", t.Error);
            Assert.True(double.IsFinite(t.Reward));
        });
        Assert.All(batch.Finished.Where(t => t.Env == "hang"), t =>
        {
            Assert.True(t.Failed);
            Assert.Contains("'hang' step 1 timed out after 3 s", t.Error);
        });
        Assert.All(batch.Finished.Where(t => t.Env == "endless"), t =>
        {
            Assert.False(t.Failed, t.Error);
            Assert.True(t.Truncated);
            Assert.InRange(t.Turns, 1, 3);   // the turn cap, or the token budget first
            Assert.Equal(0.25 * t.Turns, t.Reward, 9);
        });
        Assert.Contains(batch.Finished, t => t.Env == "endless" && t.Turns == 3);
        AssertSame(clean.Finished[0], batch.Finished.Single(t => t.Env == "arithmetic"));
    }

    [Fact]
    public async Task CancellationThrowsAndLeavesTheEngineIdle()
    {
        using var cts = new CancellationTokenSource();
        var engine = Engine();
        var runner = Runner(engine, new EpisodeOptions { Seed = 4, MaxResponseTokens = 200 }, Registry(cts));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            runner.RunAsync([Req("tool_use", 1), Req("cancels", 2), Req("tool_use", 3)], [], 1f, long.MaxValue, cts.Token));
        Assert.False(engine.HasWork);
        Assert.Equal(0, engine.UsedBlocks);
    }

    [Fact]
    public async Task PausedEpisodeJsonNamesTheBadField()
    {
        var batch = await Run(Runner(Engine()), [Req("tool_use", 8)], budget: 3);
        string json = Assert.Single(batch.Paused).ToJson();
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node["logprobs"]!.AsArray().RemoveAt(0);
        var e = Assert.Throws<CorruptFileException>(() => PausedEpisode.FromJson(node.ToJsonString(), "state.json"));
        Assert.Contains("'logprobs'", e.Message);
        Assert.Contains("state.json", e.Message);

        node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node["conversation"]![0]!["role"] = "user";
        Assert.Contains("'conversation[0].role'", Assert.Throws<CorruptFileException>(() => PausedEpisode.FromJson(node.ToJsonString())).Message);
        node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node["version"] = 2;
        Assert.Contains("'version'", Assert.Throws<CorruptFileException>(() => PausedEpisode.FromJson(node.ToJsonString())).Message);
    }

    /// <summary>Adds a fixed bias to some tokens' logits: turns end sooner and tool-call markers show up.</summary>
    private sealed class BiasDecoder(IDecoder inner, IReadOnlyDictionary<int, float> bias) : DecoderDecorator(inner)
    {
        public override void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits)
        {
            Inner.Prefill(seq, tokens, lastLogits);
            Bias(lastLogits);
        }

        public override void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits)
        {
            Inner.PrefillBatch(seqs, tokens, counts, lastLogits);
            Bias(lastLogits[..(seqs.Count * VocabSize)]);
        }

        public override void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits)
        {
            Inner.DecodeStep(seqs, tokens, logits);
            Bias(logits[..(seqs.Count * VocabSize)]);
        }

        private void Bias(Span<float> rows)
        {
            for (int at = 0; at < rows.Length; at += VocabSize)
            {
                foreach (var (token, b) in bias)
                {
                    rows[at + token] += b;
                }
            }
        }
    }

    private enum Misbehaviour
    {
        Throw,
        Hang,
        Cancel,
    }

    /// <summary>A one-turn question env for the misbehaving wrapper (arithmetic's own env).</summary>
    private sealed class ArithmeticLike : IEnvironment
    {
        private readonly IEnvironment inner = GymRegistry.CreateDefault().CreateEnvironment("arithmetic");

        public string Name => inner.Name;

        public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default) => inner.ResetAsync(seed, options, ct);

        public ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default) => inner.StepAsync(action, ct);

        public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => inner.SnapshotAsync(ct);

        public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => inner.RestoreAsync(state, ct);

        public ValueTask CloseAsync() => inner.CloseAsync();

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    /// <summary>Resets as its inner env; its steps throw, hang until cancelled, or cancel the whole run.</summary>
    private sealed class MisbehavingEnv(IEnvironment inner, Misbehaviour how, CancellationTokenSource? cancel) : IEnvironment
    {
        public string Name => inner.Name;

        public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default) => inner.ResetAsync(seed, options, ct);

        public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
        {
            switch (how)
            {
                case Misbehaviour.Throw:
                    throw new InvalidOperationException("the environment broke");
                case Misbehaviour.Hang:
                    await Task.Delay(Timeout.Infinite, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
                    break;
                default:
                    cancel!.Cancel();
                    break;
            }

            return await inner.StepAsync(action, ct);
        }

        public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => inner.SnapshotAsync(ct);

        public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => inner.RestoreAsync(state, ct);

        public ValueTask CloseAsync() => inner.CloseAsync();

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
