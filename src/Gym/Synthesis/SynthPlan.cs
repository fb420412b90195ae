namespace K2RL.Gym.Synthesis;

/// <summary>One trajectory to make: its place in the output order, environment, difficulty and task seed.</summary>
public sealed record EpisodePlan(int Index, string Env, int Difficulty, long Seed);

/// <summary>
/// The job's trajectories, decided before any runs: counts per environment and per difficulty by their weights
/// (largest remainder, so they sum exactly), a task seed each (from the job seed, environment, difficulty and ordinal:
/// adding an environment does not change another's tasks), and one deterministic shuffle of the order, so any prefix of
/// the output is a mix.
/// </summary>
public static class SynthPlan
{
    public static IReadOnlyList<EpisodePlan> Build(SynthJob job)
    {
        var items = new List<(string Env, int Difficulty, long Seed)>(job.Trajectories);
        var perEnv = Split(job.Trajectories, job.Envs.Select(e => e.Weight).ToList());
        for (int i = 0; i < job.Envs.Count; i++)
        {
            var env = job.Envs[i];
            var perLevel = Split(perEnv[i], env.DifficultyWeights);
            for (int l = 0; l < env.Difficulties.Count; l++)
            {
                int d = env.Difficulties[l];
                for (int k = 0; k < perLevel[l]; k++)
                {
                    items.Add((env.Name, d, (long)GymRandom.Mix(job.Seed, (ulong)k, $"synth:{env.Name}:{d}")));
                }
            }
        }

        var rng = new GymRandom(GymRandom.Mix(job.Seed, 0, "synth:order"));
        rng.Shuffle(items);
        return items.Select((x, i) => new EpisodePlan(i, x.Env, x.Difficulty, x.Seed)).ToList();
    }

    /// <summary><paramref name="total"/> split by weights, rounding by largest remainder (ties to the earlier entry).</summary>
    public static int[] Split(int total, IReadOnlyList<double> weights)
    {
        double sum = weights.Sum();
        var counts = new int[weights.Count];
        if (sum <= 0)
        {
            return counts;
        }

        var remainders = new double[weights.Count];
        for (int i = 0; i < weights.Count; i++)
        {
            double exact = total * weights[i] / sum;
            counts[i] = (int)Math.Floor(exact);
            remainders[i] = exact - counts[i];
        }

        int left = total - counts.Sum();
        foreach (int i in Enumerable.Range(0, weights.Count).OrderByDescending(i => remainders[i]).ThenBy(i => i).Take(left))
        {
            counts[i]++;
        }

        return counts;
    }
}
