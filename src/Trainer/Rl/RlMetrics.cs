using System.Text.Json;
using System.Text.Json.Nodes;

namespace K2RL.Trainer.Rl;

/// <summary>One environment's figures in an iteration.</summary>
public sealed record EnvIterationMetrics
{
    public int Responses { get; init; }

    public double RewardMean { get; init; }

    /// <summary>Share of responses the verifier judged correct (NaN for critic-scored envs).</summary>
    public double Accuracy { get; init; }

    public double TruncationRate { get; init; }

    public double ResponseTokensMean { get; init; }

    public int ResponseTokensMax { get; init; }

    public int Failed { get; init; }
}

/// <summary>
/// One line of the RL run's metrics.jsonl. Field names are relied on by `k2rl plot` and by operators' tools; never
/// rename them. The timing fields (<c>*_s</c>) are the only ones that differ between a resumed run and an
/// uninterrupted one with the same seed.
/// </summary>
public sealed record RlMetrics
{
    public long Iteration { get; init; }

    public long Version { get; init; }

    public double Temperature { get; init; }

    public IReadOnlyDictionary<string, EnvIterationMetrics> Envs { get; init; } = new Dictionary<string, EnvIterationMetrics>();

    public double RewardMean { get; init; }

    public double Accuracy { get; init; }

    public int Groups { get; init; }

    public int Responses { get; init; }

    public double LossRl { get; init; }

    public double LossPtx { get; init; }

    public double LossCritic { get; init; }

    public double LogprobMismatchMean { get; init; }

    public double LogprobMismatchMax { get; init; }

    /// <summary>Tokens × MoE layers (first mini-batch) whose replayed routing differs from the trainer's own choice; −1 with replay off.</summary>
    public long RoutingFlips { get; init; } = -1;

    /// <summary>Groups whose rewards were all equal, left out of the trainer's work (objective.skip_uniform_groups).</summary>
    public int UniformGroups { get; init; }

    public double KlToOld { get; init; }

    public double GradNorm { get; init; }

    public bool Skipped { get; init; }

    public float MaxLogit { get; init; }

    public int ClippedHeads { get; init; }

    public double ExpertLoadMaxOverMean { get; init; }

    public double CriticAccuracy { get; init; }

    public int CriticPairs { get; init; }

    /// <summary>Comparison prompts (rewards and closed loop) the critic's engine refused this iteration (too long for its
    /// context): their verdicts count as unparseable.</summary>
    public int CriticRefused { get; init; }

    public int PartialPaused { get; init; }

    public int PartialResumed { get; init; }

    public long TokensGenerated { get; init; }

    public double GenerateS { get; init; }

    public double ScoreS { get; init; }

    public double TrainS { get; init; }

    public double PushS { get; init; }

    public double OtherS { get; init; }

    public double IterationS { get; init; }

    /// <summary>Held-out accuracy per "env/dN" when this iteration evaluated, else null.</summary>
    public IReadOnlyDictionary<string, double>? HeldOut { get; init; }

    public static readonly string[] TimingFields = ["generate_s", "score_s", "train_s", "push_s", "other_s", "iteration_s"];

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["iteration"] = Iteration,
            ["version"] = Version,
            ["temperature"] = Round(Temperature),
            ["reward_mean"] = Round(RewardMean),
            ["accuracy"] = Round(Accuracy),
            ["groups"] = Groups,
            ["responses"] = Responses,
        };
        var envs = new JsonObject();
        foreach (var (name, e) in Envs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            envs[name] = new JsonObject
            {
                ["responses"] = e.Responses,
                ["reward_mean"] = Round(e.RewardMean),
                ["accuracy"] = Round(e.Accuracy),
                ["truncation_rate"] = Round(e.TruncationRate),
                ["response_tokens_mean"] = Round(e.ResponseTokensMean),
                ["response_tokens_max"] = e.ResponseTokensMax,
                ["failed"] = e.Failed,
            };
        }

        o["envs"] = envs;
        o["loss_rl"] = Round(LossRl);
        o["loss_ptx"] = Round(LossPtx);
        o["loss_critic"] = Round(LossCritic);
        o["logprob_mismatch_mean"] = Round(LogprobMismatchMean);
        o["logprob_mismatch_max"] = Round(LogprobMismatchMax);
        o["routing_flips"] = RoutingFlips < 0 ? null : RoutingFlips;
        o["uniform_groups"] = UniformGroups;
        o["kl_to_old"] = Round(KlToOld);
        o["grad_norm"] = Round(GradNorm);
        o["skipped"] = Skipped;
        o["max_logit"] = Round(MaxLogit);
        o["clipped_heads"] = ClippedHeads;
        o["expert_load_max_over_mean"] = Round(ExpertLoadMaxOverMean);
        o["critic_accuracy"] = Round(CriticAccuracy);
        o["critic_pairs"] = CriticPairs;
        o["critic_refused"] = CriticRefused;
        o["partial_paused"] = PartialPaused;
        o["partial_resumed"] = PartialResumed;
        o["tokens_generated"] = TokensGenerated;
        o["generate_s"] = Math.Round(GenerateS, 4);
        o["score_s"] = Math.Round(ScoreS, 4);
        o["train_s"] = Math.Round(TrainS, 4);
        o["push_s"] = Math.Round(PushS, 4);
        o["other_s"] = Math.Round(OtherS, 4);
        o["iteration_s"] = Math.Round(IterationS, 4);
        if (HeldOut is not null)
        {
            var h = new JsonObject();
            foreach (var (k, v) in HeldOut.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                h[k] = Round(v);
            }

            o["held_out"] = h;
        }

        return o.ToJsonString();
    }

    /// <summary>The iteration number of a metrics line (throws JsonException on a line cut short).</summary>
    public static long IterationOf(string line) =>
        JsonNode.Parse(line)?["iteration"]?.GetValue<long>() ?? throw new JsonException("no \"iteration\" field");

    /// <summary>NaN and infinities are written as null (JSON has no such numbers), every other value to 9 significant digits.</summary>
    private static JsonNode? Round(double v) => double.IsFinite(v) ? JsonValue.Create(double.Parse(v.ToString("G9", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture)) : null;
}
