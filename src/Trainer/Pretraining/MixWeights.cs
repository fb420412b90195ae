using System.Globalization;
using K2RL.Common;
using K2RL.Common.Config;

namespace K2RL.Trainer.Pretraining;

/// <summary>
/// The synthetic mix's weights (job file keys <c>data.task_weights</c> and <c>data.difficulty_weights</c>): how
/// often each task kind and each difficulty level is drawn. Weights are relative; a kind the job lists but does not
/// weigh has weight 1. Without either key the draw is uniform, exactly as before the keys existed.
/// </summary>
public static class MixWeights
{
    /// <summary>
    /// <c>task_weights: {kind: w, ...}</c>: every key a listed synthetic kind, every weight ≥ 0, at least one listed
    /// kind with weight &gt; 0. Null when the key is absent. Errors name the file line.
    /// </summary>
    internal static IReadOnlyDictionary<string, float>? ParseTaskWeights(YamlReader data, IReadOnlyList<string> kinds)
    {
        var section = data.Section("task_weights");
        var keys = section.Keys();
        if (keys.Count == 0)
        {
            return null;
        }

        var weights = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (key, at) in keys)
        {
            if (!kinds.Contains(key))
            {
                throw new ConfigException(
                    $"{at}: \"data.task_weights.{key}\": not one of the job's synthetic tasks ({string.Join(", ", kinds)})");
            }

            weights[key] = section.Float(key, 1f, 0, 1e6);
        }

        if (kinds.All(k => weights.GetValueOrDefault(k, 1f) == 0))
        {
            throw new ConfigException($"{data.At("task_weights")}: \"data.task_weights\" gives every synthetic task weight 0");
        }

        return weights;
    }

    /// <summary>
    /// <c>difficulty_weights: [w1, w2, ...]</c>: one weight ≥ 0 per level 1..max_difficulty, at least one &gt; 0.
    /// Null when the key is absent.
    /// </summary>
    internal static IReadOnlyList<float>? ParseDifficultyWeights(YamlReader data, int maxDifficulty)
    {
        var items = data.StrList("difficulty_weights", []);
        if (items.Count == 0)
        {
            return null;
        }

        string where = $"{data.At("difficulty_weights")}: \"data.difficulty_weights\"";
        if (items.Count != maxDifficulty)
        {
            throw new ConfigException($"{where} has {items.Count} weights; it needs one per difficulty 1..max_difficulty ({maxDifficulty})");
        }

        var weights = new float[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            if (!float.TryParse(items[i], NumberStyles.Float, CultureInfo.InvariantCulture, out weights[i]) || !(weights[i] >= 0) || float.IsInfinity(weights[i]))
            {
                throw new ConfigException($"{where}: weight {i + 1} must be a number >= 0, got \"{items[i]}\"");
            }
        }

        if (weights.All(w => w == 0))
        {
            throw new ConfigException($"{where}: every weight is 0");
        }

        return weights;
    }

    /// <summary>Cumulative weights normalized to end at 1, for <see cref="Pick"/>; null (uniform) when <paramref name="weights"/> is null.</summary>
    public static double[]? Cumulative(IReadOnlyList<float>? weights)
    {
        if (weights is null)
        {
            return null;
        }

        var cumulative = new double[weights.Count];
        double sum = 0;
        for (int i = 0; i < weights.Count; i++)
        {
            sum += weights[i];
            cumulative[i] = sum;
        }

        for (int i = 0; i < cumulative.Length; i++)
        {
            cumulative[i] /= sum;
        }

        return cumulative;
    }

    /// <summary>The index whose cumulative interval holds <paramref name="unit"/> (in [0, 1)); never a zero-weight index.</summary>
    public static int Pick(double[] cumulative, double unit)
    {
        for (int i = 0; i < cumulative.Length; i++)
        {
            if (unit < cumulative[i])
            {
                return i;
            }
        }

        // unit ≥ the last cumulative only by rounding: the last index with a positive weight.
        int last = cumulative.Length - 1;
        while (last > 0 && cumulative[last] == cumulative[last - 1])
        {
            last--;
        }

        return last;
    }
}
