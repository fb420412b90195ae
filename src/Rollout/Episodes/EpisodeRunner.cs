using K2RL.Gym;
using K2RL.Model.Tokenization;
using K2RL.Common.Chat;

namespace K2RL.Rollout.Episodes;

/// <summary>
/// Runs Gym episodes through the rollout engine at the token level, for RL. All live episodes' turns are batched
/// through the engine together; when a turn ends its action goes to the episode's environment, and the observation's
/// tokens and the assistant header are appended to the episode's sequence for the next turn (token-in, token-out,
/// as <see cref="EnginePolicy"/>). A turn cut by the budget is closed with <c>&lt;|im_end|&gt;</c>, not counted as
/// generated.
/// <para>Each turn is seeded from (options seed, episode id, turn) and the engine is batch independent, so an
/// episode's tokens do not depend on what else runs with it. When a call's token budget is spent (checked at engine
/// step boundaries), the unfinished episodes are paused: the engine's in-flight turns with their random streams and
/// each environment's snapshot, into <see cref="PausedEpisode"/>s that a later call, in any process, continues.</para>
/// <para>Every environment runs behind a <see cref="GuardedEnvironment"/> (the options' turn cap, call timeout and
/// episode time): a throw, a timeout or a non-finite reward fails that episode alone. Resets, restores, snapshots and
/// closes of many episodes run concurrently (at most <see cref="EnvConcurrency"/> at once); without a token budget
/// the engine keeps generating for the other episodes while an environment steps.</para>
/// <para>Environment and engine trouble never throws: the episode ends as <see cref="Trajectory.Failed"/>. Only
/// cancellation throws, after cancelling the episodes' requests (their cache blocks freed). The runner expects the
/// engine to itself during a call: pausing pauses every request in the engine.</para>
/// </summary>
public sealed class EpisodeRunner
{
    private readonly RolloutEngine engine;
    private readonly BpeTokenizer tokenizer;
    private readonly Func<string, IEnvironment> createEnv;
    private readonly EpisodeOptions options;
    private readonly Func<string, EpisodeOptions>? perEnv;
    private readonly int[] stops;
    private readonly int[] generationPrompt;
    private readonly int imEnd;

    /// <summary>Environment calls (resets, restores, snapshots) in flight at once.</summary>
    public const int EnvConcurrency = 64;

    public EpisodeRunner(RolloutEngine engine, BpeTokenizer tokenizer, Func<string, IEnvironment> createEnv, EpisodeOptions options,
        Func<string, EpisodeOptions>? perEnv = null)
    {
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.createEnv = createEnv;
        this.options = options;
        this.perEnv = perEnv;
        stops = EnginePolicy.StopTokens(tokenizer);
        generationPrompt = ChatEncoder.GenerationPrompt(tokenizer);
        imEnd = tokenizer.SpecialTokenId(ChatTokens.ImEnd);
    }

    /// <summary>
    /// Starts <paramref name="fresh"/> episodes and continues <paramref name="resumed"/> ones, sampling at
    /// <paramref name="temperature"/>, until all end or <paramref name="tokenBudget"/> tokens have been generated;
    /// then pauses the rest. Finished and paused episodes come back in input order (fresh first).
    /// </summary>
    public async Task<EpisodeBatch> RunAsync(IReadOnlyList<EpisodeRequest> fresh, IReadOnlyList<PausedEpisode> resumed,
        float temperature, long tokenBudget, CancellationToken ct)
    {
        CheckArguments(fresh, resumed, temperature);
        var live = new List<LiveEpisode>(fresh.Count + resumed.Count);
        try
        {
            var starts = fresh.Select(r => (Episode: new LiveEpisode(r, OptionsFor(r.Env)), Paused: (PausedEpisode?)null))
                .Concat(resumed.Select(p => (Episode: LiveEpisode.From(p, OptionsFor(p.Request.Env)), Paused: (PausedEpisode?)p))).ToList();
            live.AddRange(starts.Select(s => s.Episode));
            await ForEachEnvAsync(starts, s => s.Paused is null ? StartAsync(s.Episode, ct) : RestoreAsync(s.Episode, s.Paused, ct), ct);
            foreach (var (e, p) in starts)
            {
                if (p?.InFlight is { } turn && !e.Ended)
                {
                    e.Handle = engine.Resume(turn);   // in input order, as the engine's queue then is
                }
            }

            // Pausing at a token budget must see every ended turn's outcome at the same engine step, or what is paused
            // would depend on how fast environments answer; without a budget an episode's tokens depend on nothing
            // else, so the engine goes on while environments step (a hung one holds only its own episodes).
            bool barrier = tokenBudget != long.MaxValue;
            long spent = 0;
            int steps = 0;
            while (true)
            {
                await TakeStepsAsync(live, all: false);
                if (spent >= tokenBudget)
                {
                    break;
                }

                foreach (var e in live.Where(e => e.Stepping is null && !e.Ended && e.Handle is null))
                {
                    SubmitTurn(e, temperature);
                }

                if (!live.Any(e => e.Handle is not null))
                {
                    var stepping = live.Where(e => e.Stepping is not null).Select(e => e.Stepping!).ToList();
                    if (stepping.Count == 0)
                    {
                        break;
                    }

                    await Task.WhenAny(stepping);
                    continue;
                }

                ct.ThrowIfCancellationRequested();
                spent += await StepEngineAsync(live, ct);
                steps++;
                foreach (var e in live.Where(e => e.Handle?.Result is not null))
                {
                    e.Stepping = EndTurnAsync(e, ct);
                }

                if (barrier)
                {
                    await TakeStepsAsync(live, all: true);
                }
            }

            await TakeStepsAsync(live, all: true);
            var paused = await PauseAsync(live, ct);
            var finished = live.Where(e => e.Ended).Select(e => e.ToTrajectory()).ToList();
            return new EpisodeBatch(finished, paused, spent, steps, resumed.Count);
        }
        catch (OperationCanceledException)
        {
            foreach (var e in live)
            {
                e.Handle?.Cancel();
            }

            lock (engine)
            {
                engine.Sweep();   // ends the cancelled requests and frees their blocks
            }

            throw;
        }
        finally
        {
            // after a cancellation, steps still running end soon (they see it) and must not meet a closed environment
            await Task.WhenAll(live.Where(e => e.Stepping is not null).Select(e => e.Stepping!.ContinueWith(_ => { }, TaskScheduler.Default)));
            await Task.WhenAll(live.Select(CloseAsync));
        }
    }

    /// <summary>Takes in the environment steps that have ended (or waits for all of them); rethrows a step's cancellation.</summary>
    private static async Task TakeStepsAsync(List<LiveEpisode> live, bool all)
    {
        foreach (var e in live)
        {
            if (e.Stepping is { } step && (all || step.IsCompleted))
            {
                e.Stepping = null;
                await step;
            }
        }
    }

    private void CheckArguments(IReadOnlyList<EpisodeRequest> fresh, IReadOnlyList<PausedEpisode> resumed, float temperature)
    {
        var probe = new SamplingParams { Temperature = temperature, TopP = options.TopP, TopK = options.TopK };
        if (probe.Problem(engine.Decoder.VocabSize) is { } problem)
        {
            throw new ArgumentException(problem, nameof(temperature));
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (string id in fresh.Select(r => r.Id).Concat(resumed.Select(p => p.Request.Id)))
        {
            if (!ids.Add(id))
            {
                throw new ArgumentException($"episode id '{id}' appears twice in one call");
            }
        }
    }

    private EpisodeOptions OptionsFor(string env) => perEnv?.Invoke(env) ?? options;

    private async Task StartAsync(LiveEpisode e, CancellationToken ct)
    {
        if (!TryCreateEnv(e))
        {
            return;
        }

        var reset = new ResetOptions { Difficulty = e.Request.Difficulty };
        var obs = await EnvCallAsync(e, t => e.Env!.ResetAsync(e.Request.TaskSeed, reset, t), ct);
        if (obs is null)
        {
            return;
        }

        e.Conversation.AddRange(obs.Messages);
        e.TokenizedMessages = obs.Messages.Count;
        e.FirstPrompt = string.Join("\n\n", obs.Messages.Where(m => m.Role == Role.User).Select(m => m.Content));
        e.AppendContext(EnginePolicy.PromptTokens(tokenizer, obs.Messages, obs.Tools));
        e.PromptTokens = e.Tokens.Count;
    }

    /// <summary>A paused episode's environment from its snapshot (the turn cap counts the turns already taken); the runner resumes its in-flight turn.</summary>
    private async Task RestoreAsync(LiveEpisode e, PausedEpisode p, CancellationToken ct)
    {
        if (TryCreateEnv(e))
        {
            await EnvCallAsync(e, async t =>
            {
                await e.Env!.RestoreAsync(p.EnvSnapshot, p.Turns, t);
                return true;
            }, ct);
        }
    }

    private bool TryCreateEnv(LiveEpisode e)
    {
        try
        {
            e.Env = new GuardedEnvironment(createEnv(e.Request.Env), e.Options.Limits, e.Request.Env);
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            e.Fail($"creating environment '{e.Request.Env}' failed: {ex.Message}");
            return false;
        }
    }

    /// <summary>Environment work for many episodes at once, at most <see cref="EnvConcurrency"/> at a time: a hung environment costs one timeout, not one per episode.</summary>
    private static Task ForEachEnvAsync<T>(IEnumerable<T> items, Func<T, Task> work, CancellationToken ct) =>
        Parallel.ForEachAsync(items, new ParallelOptions { MaxDegreeOfParallelism = EnvConcurrency, CancellationToken = ct },
            async (item, _) => await work(item));

    /// <summary>Appends the pending observation and the assistant header, then submits the next turn; or ends the episode at a limit.</summary>
    private void SubmitTurn(LiveEpisode e, float temperature)
    {
        int left = e.Options.MaxResponseTokens - e.BudgetUsed;
        if (left <= 0)
        {
            e.End(truncated: true);
            return;
        }

        var next = EnginePolicy.MessageTokens(tokenizer, e.Conversation.Skip(e.TokenizedMessages)).Concat(generationPrompt).ToArray();
        if (e.Tokens.Count + next.Length >= engine.Decoder.MaxContext)
        {
            e.End(truncated: true);   // the context is full: no room for one more token
            return;
        }

        e.AppendContext(next);
        e.TokenizedMessages = e.Conversation.Count;
        var sampling = new SamplingParams
        {
            Temperature = temperature,
            TopP = e.Options.TopP,
            TopK = e.Options.TopK,
            MaxTokens = left,
            StopTokens = stops,
            Seed = EngineBatch.Mix(e.Options.Seed, StableHash(e.Request.Id), (ulong)e.Turns),
        };
        e.Handle = engine.Submit(new GenerationRequest(e.Request.Id, e.Tokens.ToArray(), sampling));
    }

    /// <summary>One engine step; an engine that throws ends the episodes in flight as failed (their requests cancelled).</summary>
    private async Task<int> StepEngineAsync(List<LiveEpisode> live, CancellationToken ct)
    {
        try
        {
            return await Task.Run(() =>
            {
                lock (engine)
                {
                    return engine.Step();
                }
            }, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            foreach (var e in live.Where(e => e.Handle is not null))
            {
                e.Handle!.Cancel();
                e.Handle = null;
                e.Fail($"engine step failed: {ex.Message}");
            }

            lock (engine)
            {
                engine.Sweep();
            }

            return 0;
        }
    }

    /// <summary>Takes an ended turn into the sequence, sends its action to the environment and takes the outcome.</summary>
    private async Task EndTurnAsync(LiveEpisode e, CancellationToken ct)
    {
        var result = e.Handle!.Result!;
        e.Handle = null;
        if (result.FinishReason is FinishReason.Error or FinishReason.Cancelled or FinishReason.Paused)
        {
            e.Fail($"engine ended turn {e.Turns} with {result.FinishReason}: {result.Error}");
            return;
        }

        e.TakeRouting(result);
        foreach (var t in result.Tokens)
        {
            e.AppendGenerated(t);
        }

        e.BudgetUsed += result.Tokens.Count;
        e.Turns++;
        e.Degenerate |= result.Degenerate;
        var (action, close) = EnginePolicy.EndTurn(tokenizer, result.TokenIds, stops);
        if (close)
        {
            e.AppendContext([imEnd]);
        }

        e.Conversation.Add(Message.AssistantText(action));
        e.TokenizedMessages = e.Conversation.Count;
        var step = await e.Env!.StepAsync(action, ct);   // the guard: a throw, timeout or non-finite reward is a failed step
        if (step.Failed)
        {
            e.Fail(step.Info.Failure!);
            return;
        }

        e.Conversation.AddRange(step.Observation.Messages);
        e.Reward += step.Reward;
        e.Correct = step.Info.Correct ?? e.Correct;
        if (step.Done || result.Truncated)
        {
            e.End(truncated: result.Truncated || step.Truncated);
        }
    }

    /// <summary>Pauses every unfinished episode: in-flight turns out of the engine, environments into snapshots.</summary>
    private async Task<List<PausedEpisode>> PauseAsync(List<LiveEpisode> live, CancellationToken ct)
    {
        var store = new InMemoryPartialRolloutStore();
        if (live.Any(e => e.Handle is not null))
        {
            lock (engine)
            {
                engine.PauseAll(store);
            }
        }

        var pausing = new List<(LiveEpisode Episode, PartialRollout? Turn)>();
        foreach (var e in live.Where(e => !e.Ended))
        {
            PartialRollout? turn = null;
            if (e.Handle is { } handle)
            {
                e.Handle = null;
                if (handle.Result is not { FinishReason: FinishReason.Paused } || !store.TryLoad(e.Request.Id, out turn))
                {
                    e.Fail($"pausing turn {e.Turns} failed: the engine ended it with {handle.Result?.FinishReason}: {handle.Result?.Error}");
                    continue;
                }
            }

            pausing.Add((e, turn));
        }

        var snapshots = new byte[]?[pausing.Count];
        await ForEachEnvAsync(Enumerable.Range(0, pausing.Count),
            async i => snapshots[i] = await EnvCallAsync(pausing[i].Episode, t => pausing[i].Episode.Env!.SnapshotAsync(t), ct), ct);
        var paused = new List<PausedEpisode>();
        for (int i = 0; i < pausing.Count; i++)
        {
            if (snapshots[i] is { } snapshot)
            {
                paused.Add(pausing[i].Episode.ToPaused(snapshot, pausing[i].Turn));
            }
        }

        return paused;
    }

    /// <summary>
    /// A reset, restore or snapshot through the episode's <see cref="GuardedEnvironment"/> (which bounds it in time): a
    /// failure fails the episode and returns default; only the caller's cancellation throws.
    /// </summary>
    private static async Task<T?> EnvCallAsync<T>(LiveEpisode e, Func<CancellationToken, ValueTask<T>> call, CancellationToken ct)
    {
        try
        {
            return await call(ct);
        }
        catch (EnvironmentFailedException ex)
        {
            e.Fail(ex.Message);
            return default;
        }
    }

    /// <summary>Closes the episode's environment (bounded by its call timeout; a close that fails only leaks it).</summary>
    private static async Task CloseAsync(LiveEpisode e)
    {
        if (e.Env is { } env)
        {
            e.Env = null;
            await env.CloseAsync();
        }
    }

    /// <summary>FNV-1a over the id's UTF-16 code units: stable across processes (unlike string.GetHashCode).</summary>
    private static ulong StableHash(string s)
    {
        ulong h = 0xCBF29CE484222325;
        foreach (char c in s)
        {
            h = (h ^ c) * 0x100000001B3;
        }

        return h;
    }
}
