using K2RL.Common.Metrics;

namespace K2RL.Common.Tests.Metrics;

public sealed class QuantilesTests
{
    [Fact]
    public void NearestRankTakesTheValueAtFloorOfQTimesNInSortedOrder()
    {
        double[] hundred = Enumerable.Range(1, 100).Select(i => (double)(101 - i)).ToArray();   // 100 .. 1, unsorted
        Assert.Equal(51, Quantiles.NearestRank(hundred, 0.5));
        Assert.Equal(100, Quantiles.NearestRank(hundred, 0.99));
        Assert.Equal(100, Quantiles.NearestRank(hundred, 1.0));
        Assert.Equal(1, Quantiles.NearestRank(hundred, 0.0));
        Assert.Equal(7, Quantiles.NearestRank([7], 0.9));
    }

    [Fact]
    public void MedianAveragesTheTwoMiddleValuesOfAnEvenSample()
    {
        Assert.Equal(2.5, Quantiles.Median([4, 1, 3, 2]));
        Assert.Equal(3, Quantiles.Median([5, 3, 1]));
    }

    [Fact]
    public void AnEmptySampleOrAQuantileOutsideZeroToOneIsRefused()
    {
        Assert.Throws<ArgumentException>(() => Quantiles.NearestRank([], 0.5));
        Assert.Throws<ArgumentException>(() => Quantiles.Median([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Quantiles.NearestRank([1], 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Quantiles.NearestRank([1], -0.1));
    }
}
