namespace K2RL.Common.Metrics;

/// <summary>
/// The order statistics the benchmarks report. <see cref="NearestRank"/> is the value at rank ⌊q·n⌋ of the sorted sample
/// (clamped to the last), so the p99 of 100 samples is the largest and the p50 the 51st; <see cref="Median"/> averages
/// the two middle values of an even sample.
/// </summary>
public static class Quantiles
{
    public static double NearestRank(IEnumerable<double> values, double q)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(q, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(q, 1.0);
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("no values to take a quantile of", nameof(values));
        }

        return sorted[Math.Min(sorted.Length - 1, (int)Math.Floor(q * sorted.Length))];
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("no values to take a median of", nameof(values));
        }

        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
