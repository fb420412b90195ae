using System.Globalization;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;

namespace K2RL.Trainer.Rl;

/// <summary>
/// The iteration's prompts: a pure function of (seed, iteration), so a resumed run draws exactly what the
/// uninterrupted one drew and no random state needs saving. Prompt j picks its environment by the mix weights and a
/// difficulty uniformly in the environment's range, and a train-split task seed; each prompt gets K episode requests.
/// Ids are <c>i{iteration}/{env}/d{difficulty}/t{task seed}/s{sample}</c>; the group of a response is its id without the sample.
/// </summary>
public static class PromptMix
{
    public static IReadOnlyList<EpisodeRequest> Draw(RlJobConfig job, long iteration)
    {
        double total = job.Envs.Sum(e => e.Weight);
        var rng = new SamplerRng(job.Seed ^ (0xA24BAED4963EE407UL * (ulong)(iteration + 1)));
        var requests = new List<EpisodeRequest>(job.PromptsPerIteration * job.SamplesPerPrompt);
        for (int p = 0; p < job.PromptsPerIteration; p++)
        {
            double u = rng.NextDouble() * total;
            var env = job.Envs[^1];
            foreach (var e in job.Envs)
            {
                if (u < e.Weight)
                {
                    env = e;
                    break;
                }

                u -= e.Weight;
            }

            int difficulty = env.MinDifficulty + (int)(rng.NextUInt64() % (ulong)(env.MaxDifficulty - env.MinDifficulty + 1));
            long taskSeed = (long)(rng.NextUInt64() >> 2);
            string group = string.Create(CultureInfo.InvariantCulture, $"i{iteration:D6}/{env.Name}/d{difficulty}/t{taskSeed}");
            for (int k = 0; k < job.SamplesPerPrompt; k++)
            {
                requests.Add(new EpisodeRequest(string.Create(CultureInfo.InvariantCulture, $"{group}/s{k}"), env.Name, taskSeed, difficulty, k));
            }
        }

        return requests;
    }

    /// <summary>The group (prompt) of an episode id.</summary>
    public static string GroupOf(string id)
    {
        int slash = id.LastIndexOf('/');
        return slash < 0 ? id : id[..slash];
    }
}
