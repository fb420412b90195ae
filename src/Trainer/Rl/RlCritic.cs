using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;
using Serilog;

namespace K2RL.Trainer.Rl;

/// <summary>A scored group: each response's final reward (after budget control), and what it came from.</summary>
public sealed record ScoredGroup(ResponseGroup Group, IReadOnlyList<double> Rewards, bool Verifiable, int MandatoryViolations)
{
    public IReadOnlyList<Trajectory> Members => Group.Members;
}

/// <summary>The critic's closed loop in one iteration: pairs with a known answer, how many it got right, and the examples to train it on.</summary>
public sealed record CalibrationResult(int Pairs, int Agreed, IReadOnlyList<CriticTrainingExample> Examples)
{
    public static readonly CalibrationResult None = new(0, 0, []);

    public double Accuracy => Pairs == 0 ? double.NaN : Agreed / (double)Pairs;
}

/// <summary>
/// Rewards for the RL job (SPEC §3). Verifiable envs: the environment's reward (its verifier). Others: the
/// self-critique rubric reward — the policy itself through the rollout engine (or an external judge) compares the K
/// responses pairwise against the applicable rubrics, win rate or Bradley–Terry turns outcomes into rewards, and
/// mandatory rubrics are enforced in the reward by <see cref="MandatoryGate"/>. Then budget control: a truncated
/// response gets min(r, truncation_reward), an episode whose environment failed gets failure_reward. The closed loop:
/// on verifiable groups the critic also judges pairs whose truth the verifier knows.
/// </summary>
public sealed class RlCritic : IDisposable
{
    private readonly RlJobConfig job;
    private readonly GymRegistry registry;
    private readonly ILogger log;
    private readonly IJudge judge;
    private readonly CriticProtocol protocol;
    private readonly MandatoryGate gate;
    private readonly CriticRewardMode mode;

    public RlCritic(RlJobConfig job, GymRegistry registry, RolloutEngine engine, BpeTokenizer tokenizer, ILogger log)
    {
        this.job = job;
        this.registry = registry;
        this.log = log;
        judge = job.Critic.Judge == "http"
            ? new HttpJudge(new Uri(job.Critic.Endpoint!), job.Critic.Http with { Model = job.Critic.JudgeModel })
            : new EngineJudge(engine, tokenizer, job.Critic.MaxTokens);
        bool needsRubrics = job.Envs.Any(e => !IsVerifiable(e)) || job.Critic.CalibrationPairs > 0;
        if (needsRubrics && registry.Rubrics.Count == 0)
        {
            if (Directory.Exists(job.Critic.Rubrics))
            {
                registry.LoadRubrics(job.Critic.Rubrics);
            }
            else
            {
                // Only the default can be missing here (a path given in the job file is checked when it is read).
                log.Warning("no rubric directory at {Rubrics} (working directory {Cwd}): the critic compares responses without rubrics; " +
                    "run from the repository root or set critic.rubrics", job.Critic.Rubrics, Environment.CurrentDirectory);
            }
        }

        protocol = new CriticProtocol(judge, registry.Rubrics, new CriticOptions { BothOrders = job.Critic.BothOrders, RubricDetail = job.Critic.RubricDetail });
        gate = new MandatoryGate(judge);
        mode = job.Critic.Mode == "bradley_terry" ? CriticRewardMode.BradleyTerry : CriticRewardMode.WinRate;
    }

    /// <summary>Comparison prompts the policy's engine refused so far (a prompt longer than its context); 0 for an http judge.</summary>
    public int Refused => (judge as EngineJudge)?.Failures ?? 0;

    /// <summary>Why the engine refused the last one.</summary>
    public string? LastRefusal => (judge as EngineJudge)?.LastError;

    public bool IsVerifiable(RlEnvSettings env) => env.Reward switch
    {
        RewardSource.Verifier => true,
        RewardSource.Critic => false,
        _ => registry.GetEnvironment(env.Name).HasVerifier,
    };

    public async Task<List<ScoredGroup>> ScoreAsync(IReadOnlyList<ResponseGroup> groups, CancellationToken ct)
    {
        var scored = new List<ScoredGroup>(groups.Count);
        foreach (var g in groups)
        {
            bool verifiable = IsVerifiable(g.Env);
            double[] rewards;
            int violations = 0;
            if (verifiable)
            {
                rewards = g.Members.Select(t => t.Reward).ToArray();
            }
            else
            {
                var texts = g.Members.Select(ResponseText).ToList();
                string prompt = g.Members[0].FirstPrompt;
                var scores = await protocol.ScoreAsync(prompt, texts, g.Env.Tags, ct);
                rewards = [.. scores.Rewards(mode)];
                var (gated, unparseable) = await gate.CheckAsync(prompt, texts, protocol.RubricsFor(g.Env.Tags), ct);
                for (int i = 0; i < rewards.Length; i++)
                {
                    if (gated[i].Count > 0)
                    {
                        rewards[i] = Math.Min(rewards[i], job.Critic.MandatoryPenalty);
                        violations++;
                    }
                }

                if (unparseable > 0)
                {
                    log.Debug("group {Group}: {Count} mandatory-rubric answers unparseable (not capped)", g.Key, unparseable);
                }
            }

            for (int i = 0; i < rewards.Length; i++)
            {
                var t = g.Members[i];
                if (t.Failed)
                {
                    rewards[i] = job.FailureReward;
                    log.Warning("episode {Id} failed ({Error}): scored {Reward}", t.Id, t.Error, job.FailureReward);
                }
                else if (t.Truncated)
                {
                    rewards[i] = Math.Min(rewards[i], job.TruncationReward);
                }
                else if (!double.IsFinite(rewards[i]))
                {
                    log.Warning("episode {Id}: non-finite reward {Reward} scored as a failure", t.Id, rewards[i]);
                    rewards[i] = job.FailureReward;
                }
            }

            scored.Add(new ScoredGroup(g, rewards, verifiable, violations));
        }

        return scored;
    }

    /// <summary>
    /// The closed loop: up to <see cref="CriticSettings.CalibrationPairs"/> verifiable groups whose responses the verifier
    /// told apart (in group order); in each, the best and the worst response (first by sample index) are judged in both
    /// orders. Returns the critic's agreement with the verifier and the comparisons as training examples.
    /// </summary>
    public async Task<CalibrationResult> CalibrateAsync(IReadOnlyList<ScoredGroup> groups, CancellationToken ct)
    {
        if (job.Critic.CalibrationPairs == 0)
        {
            return CalibrationResult.None;
        }

        var calibration = new CriticCalibration();
        var examples = new List<CriticTrainingExample>();
        int used = 0;
        foreach (var g in groups.Where(g => g.Verifiable))
        {
            if (used >= job.Critic.CalibrationPairs)
            {
                break;
            }

            int best = 0, worst = 0;
            for (int i = 1; i < g.Rewards.Count; i++)
            {
                best = g.Rewards[i] > g.Rewards[best] ? i : best;
                worst = g.Rewards[i] < g.Rewards[worst] ? i : worst;
            }

            if (g.Rewards[best] == g.Rewards[worst])
            {
                continue;
            }

            used++;
            string[] pair = [ResponseText(g.Members[best]), ResponseText(g.Members[worst])];
            var scores = await protocol.ScoreAsync(g.Members[0].FirstPrompt, pair, g.Group.Env.Tags, ct);
            examples.AddRange(calibration.Record(scores, [g.Rewards[best], g.Rewards[worst]]));
        }

        return new CalibrationResult(calibration.Agreed + calibration.Disagreed, calibration.Agreed, examples);
    }

    /// <summary>What the critic reads of a response: the assistant's turns, in order.</summary>
    public static string ResponseText(Trajectory t) =>
        string.Join("\n\n", t.Conversation.Where(m => m.Role == Role.Assistant).Select(m => m.Content));

    public void Dispose() => (judge as IDisposable)?.Dispose();
}
