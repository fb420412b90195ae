using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;
using K2RL.Trainer.Training;

namespace K2RL.Trainer.Rl;

/// <summary>What one iteration's training did.</summary>
internal sealed record TrainOutcome
{
    public bool Updated { get; init; }

    public bool Skipped { get; init; }

    public double LossRl { get; init; }

    public double LossPtx { get; init; } = double.NaN;

    public double LossCritic { get; init; } = double.NaN;

    public double MismatchMean { get; init; } = double.NaN;

    public double MismatchMax { get; init; } = double.NaN;

    public long RoutingFlips { get; init; } = -1;

    /// <summary>Groups left out of training for equal rewards (<see cref="RlJobConfig.SkipUniformGroups"/>).</summary>
    public int UniformGroups { get; init; }

    public double KlToOld { get; init; } = double.NaN;

    public double GradNorm { get; init; } = double.NaN;

    public float MaxLogit { get; init; }

    public int ClippedHeads { get; init; }

    public double ExpertLoadMaxOverMean { get; init; }
}

public sealed partial class RlJob
{
    private const int RowAlign = 32;

    /// <summary>
    /// One optimizer step per mini-batch over the scored groups (split round-robin), each with its PTX micro-batch;
    /// the critic's examples join the first. Nothing is trained when no group is complete.
    /// </summary>
    private TrainOutcome Train(IReadOnlyList<ScoredGroup> groups, IReadOnlyList<CriticTrainingExample> criticExamples)
    {
        if (groups.Count == 0)
        {
            return new TrainOutcome();
        }

        int parts = Math.Min(job.MiniBatches, groups.Count);
        var stats = new RlStepStats();
        TrainStepResult? lastResult = null;
        double ptxSum = 0, criticSum = 0;
        int ptxSteps = 0, criticSteps = 0;
        bool skipped = false;
        for (int part = 0; part < parts; part++)
        {
            var mine = groups.Where((_, i) => i % parts == part).ToList();
            int uniformBefore = stats.UniformGroups;
            var batches = RlMicroBatches(mine, stats, measureMismatch: part == 0);
            if (batches.Count == 0 && stats.UniformGroups == uniformBefore)
            {
                continue;   // no response of this mini-batch sampled a token: nothing to train on
            }

            // (groups left out for equal rewards still get this step's PTX and critic terms: the update is the one they
            // would have had)

            double rlBefore = stats.Loss, criticBefore = stats.CriticLoss;
            var critic = part == 0 && job.Critic.TrainWeight > 0 ? CriticMicroBatch(criticExamples, stats) : null;
            bool trainsCritic = critic is not null;
            if (critic is not null)
            {
                batches.Add(critic);
            }

            if (job.PtxLambda > 0)
            {
                int B = job.PtxBatchSize, T = Math.Min(job.PtxSeqLen, model.Model.Config.MaxPositionEmbeddings);
                var inputs = new int[B * T];
                var targets = new int[B * T];
                ptx.Next(inputs, targets, B, T);
                batches.Add(new MicroBatch(inputs, targets, B, T) { Scale = (float)job.PtxLambda });
            }

            if (batches.Count == 0)
            {
                continue;
            }

            var result = trainStep.Run(batches, job.Optimizer.Lr);
            lastResult = result;
            skipped |= result.Skipped;
            double rl = stats.Loss - rlBefore;
            double criticLoss = stats.CriticLoss - criticBefore;
            if (trainsCritic)
            {
                criticSum += criticLoss / job.Critic.TrainWeight;
                criticSteps++;
            }

            if (job.PtxLambda > 0)
            {
                ptxSum += (result.Loss - rl - criticLoss) / job.PtxLambda;
                ptxSteps++;
            }
        }

        if (skipped)
        {
            badInARow++;
            log.Warning("iteration {Iteration}: non-finite loss or gradient; update skipped ({Bad} in a row)", iteration + 1, badInARow);
        }
        else
        {
            badInARow = 0;
        }

        if (lastResult is not { } r)
        {
            return new TrainOutcome();
        }

        return new TrainOutcome
        {
            Updated = !skipped,
            Skipped = skipped,
            LossRl = stats.Loss,
            LossPtx = ptxSteps == 0 ? double.NaN : ptxSum / ptxSteps,
            LossCritic = criticSteps == 0 ? double.NaN : criticSum / criticSteps,
            MismatchMean = stats.MismatchCount == 0 ? double.NaN : stats.MismatchSum / stats.MismatchCount,
            MismatchMax = stats.MismatchCount == 0 ? double.NaN : stats.MismatchMax,
            RoutingFlips = job.RoutingReplay ? stats.RoutingFlips : -1,
            UniformGroups = stats.UniformGroups,
            KlToOld = stats.KlCount == 0 ? double.NaN : stats.KlSum / stats.KlCount,
            GradNorm = r.GradNorm,
            MaxLogit = r.MaxLogit,
            ClippedHeads = r.ClippedHeads,
            ExpertLoadMaxOverMean = r.ExpertLoadMaxOverMean,
        };
    }

    /// <summary>
    /// The groups' responses as micro-batches of one response per row (inputs: the sequence; targets: the next token
    /// where the policy sampled it, else masked), sorted by length so rows of a micro-batch pad little, with the K2
    /// objective's weighting.
    /// </summary>
    private List<MicroBatch> RlMicroBatches(IReadOnlyList<ScoredGroup> groups, RlStepStats stats, bool measureMismatch)
    {
        int P = groups.Count;
        var rows = new List<RlRow>();
        foreach (var g in groups)
        {
            if (job.SkipUniformGroups && g.Rewards.Count > 0 && g.Rewards.All(r => r == g.Rewards[0]))
            {
                stats.UniformGroups++;   // no advantage: nothing to learn from it (RlJobConfig.SkipUniformGroups)
                continue;
            }

            double baseline = K2Objective.Baseline(g.Rewards.ToArray());
            for (int i = 0; i < g.Members.Count; i++)
            {
                // A response with no sampled token (its environment failed before the first turn) adds nothing to the
                // gradient; its reward still counts in the group's baseline.
                if (g.Members[i].ResponseTokens > 0 && g.Members[i].Tokens.Length > 1)
                {
                    rows.Add(new RlRow(g.Members[i], g.Rewards[i], baseline, g.Members.Count, P));
                }
            }
        }

        rows.Sort((a, b) => a.T.Tokens.Length != b.T.Tokens.Length ? a.T.Tokens.Length.CompareTo(b.T.Tokens.Length) : string.CompareOrdinal(a.T.Id, b.T.Id));
        int maxT = model.Model.Config.MaxPositionEmbeddings;
        var batches = new List<MicroBatch>();
        for (int start = 0; start < rows.Count; start += job.MicroBatchRows)
        {
            var chunk = rows.GetRange(start, Math.Min(job.MicroBatchRows, rows.Count - start));
            int longest = chunk.Max(r => r.T.Tokens.Length - 1);
            int T = Math.Min(maxT, (longest + RowAlign - 1) / RowAlign * RowAlign);
            int B = chunk.Count;
            var inputs = new int[B * T];
            var targets = new int[B * T];
            Array.Fill(targets, -1);
            for (int b = 0; b < B; b++)
            {
                var t = chunk[b].T;
                int n = Math.Min(t.Tokens.Length - 1, T);
                for (int p = 0; p < n; p++)
                {
                    inputs[b * T + p] = t.Tokens[p];
                    targets[b * T + p] = t.Generated[p + 1] ? t.Tokens[p + 1] : -1;
                }
            }

            batches.Add(new MicroBatch(inputs, targets, B, T)
            {
                Weighting = (logp, tg, w) => Weigh(chunk, T, logp, tg, w, stats, measureMismatch),
                Routing = job.RoutingReplay ? ReplayRouting(chunk, B, T) : null,
            });
        }

        return batches;
    }

    /// <summary>
    /// The rows' routing records laid out as the micro-batch's inputs ([B·T, stride]); −1 (own routing) for padding,
    /// positions the engine did not compute, and rows without a record. Null when no row has one.
    /// </summary>
    private int[]? ReplayRouting(List<RlRow> rows, int B, int T)
    {
        int stride = model.Model.Config.RoutingStride;
        if (stride == 0 || rows.All(r => r.T.Routing is null))
        {
            return null;
        }

        var routing = new int[B * T * stride];
        routing.AsSpan().Fill(-1);
        for (int b = 0; b < B; b++)
        {
            if (rows[b].T.Routing is not { } r)
            {
                continue;
            }

            if (r.Length != rows[b].T.Tokens.Length * stride)
            {
                throw new K2RL.Common.K2Exception(
                    $"trajectory {rows[b].T.Id}: its routing record holds {r.Length} ids, not {rows[b].T.Tokens.Length} tokens × {stride} (a record from another model?)");
            }

            int n = Math.Min(rows[b].T.Tokens.Length - 1, T);
            r.AsSpan(0, n * stride).CopyTo(routing.AsSpan(b * T * stride, n * stride));
        }

        return routing;
    }

    /// <summary>The K2 objective's per-token weights for one micro-batch (see <see cref="K2Objective"/>); returns its loss share.</summary>
    private double Weigh(List<RlRow> rows, int T, ReadOnlySpan<float> logp, ReadOnlySpan<int> targets, Span<float> weights,
        RlStepStats stats, bool measureMismatch)
    {
        double loss = 0;
        weights.Clear();
        if (measureMismatch)
        {
            stats.RoutingFlips += model.ReplayFlips;   // of the forward these weights follow
        }

        for (int b = 0; b < rows.Count; b++)
        {
            var row = rows[b];
            var t = row.T;
            double sumTheta = 0, sumOld = 0;
            int n = 0;
            for (int p = b * T, q = 1; p < (b + 1) * T; p++, q++)
            {
                if (targets[p] < 0)
                {
                    continue;
                }

                double lt = logp[p], lo = t.LogProbs[q];
                sumTheta += lt;
                sumOld += lo;
                n++;
                double logRatio = lt - lo;
                stats.KlSum += Math.Exp(logRatio) - 1 - logRatio;   // k3 estimator of KL(pi_old || pi_theta)
                stats.KlCount++;
                if (measureMismatch && t.Versions[q] == version)
                {
                    double d = Math.Abs(logRatio);
                    stats.MismatchSum += d;
                    stats.MismatchMax = Math.Max(stats.MismatchMax, d);
                    stats.MismatchCount++;
                }
            }

            if (n == 0)
            {
                continue;
            }

            double a = K2Objective.Advantage(row.Reward, row.Baseline, job.Tau, K2Objective.LogRatio(sumTheta, sumOld, n, job.LengthNormalized));
            float w = (float)K2Objective.TokenWeight(a, job.Tau, row.K, row.P, n, job.LengthNormalized);
            for (int p = b * T; p < (b + 1) * T; p++)
            {
                if (targets[p] >= 0)
                {
                    weights[p] = w;
                }
            }

            loss += K2Objective.LossTerm(a, row.K, row.P);
        }

        stats.Loss += loss;
        return loss;
    }

    /// <summary>
    /// The critic's supervised examples as one micro-batch: the comparison prompt as a user turn, the verifier's verdict as
    /// the assistant's reply, loss on the reply's tokens only, weight train_weight per example-token mean. Examples
    /// longer than the context are left out.
    /// </summary>
    private MicroBatch? CriticMicroBatch(IReadOnlyList<CriticTrainingExample> examples, RlStepStats stats)
    {
        int maxT = model.Model.Config.MaxPositionEmbeddings;
        var seqs = new List<(int[] Tokens, int PromptLength)>();
        int imEnd = tokenizer.SpecialTokenId(ChatTokens.ImEnd);
        foreach (var e in examples)
        {
            var prompt = ChatEncoder.Encode(tokenizer, [Message.UserText(e.Prompt)], addGenerationPrompt: true);
            int[] reply = [.. tokenizer.Encode(e.Target, allowSpecial: false), imEnd];
            if (prompt.Length + reply.Length - 1 <= maxT)
            {
                seqs.Add(([.. prompt, .. reply], prompt.Length));
            }
        }

        if (seqs.Count == 0)
        {
            return null;
        }

        int T = Math.Min(maxT, (seqs.Max(s => s.Tokens.Length - 1) + RowAlign - 1) / RowAlign * RowAlign);
        int B = seqs.Count;
        var inputs = new int[B * T];
        var targets = new int[B * T];
        Array.Fill(targets, -1);
        int count = 0;
        for (int b = 0; b < B; b++)
        {
            var (tokens, promptLength) = seqs[b];
            for (int p = 0; p < tokens.Length - 1; p++)
            {
                inputs[b * T + p] = tokens[p];
                if (p + 1 >= promptLength)
                {
                    targets[b * T + p] = tokens[p + 1];
                    count++;
                }
            }
        }

        float weight = (float)(job.Critic.TrainWeight / Math.Max(1, count));
        return new MicroBatch(inputs, targets, B, T)
        {
            Weighting = (logp, tg, w) =>
            {
                double loss = 0;
                for (int i = 0; i < tg.Length; i++)
                {
                    w[i] = tg[i] >= 0 ? weight : 0;
                    loss -= tg[i] >= 0 ? weight * logp[i] : 0;
                }

                stats.CriticLoss += loss;
                return loss;
            },
        };
    }

    private sealed record RlRow(Trajectory T, double Reward, double Baseline, int K, int P);

    private sealed class RlStepStats
    {
        public double Loss;
        public double CriticLoss;
        public double KlSum;
        public long KlCount;
        public double MismatchSum;
        public double MismatchMax;
        public long MismatchCount;
        public long RoutingFlips;
        public int UniformGroups;
    }
}
