using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;

namespace K2RL.Gym.Tests;

public class AgreementTests
{
    private static List<(T, T)> Pairs<T>(params (T A, T B, int Count)[] cells) =>
        cells.SelectMany(c => Enumerable.Repeat((c.A, c.B), c.Count)).ToList();

    [Fact]
    public void KappaOfTwoCategoriesMatchesTheHandComputation()
    {
        // 50 items: both yes 20, first yes second no 5, first no second yes 10, both no 15.
        // p_o = 35/50 = 0.7; first says yes 25/50, second 30/50; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
        var pairs = Pairs(("yes", "yes", 20), ("yes", "no", 5), ("no", "yes", 10), ("no", "no", 15));
        Assert.Equal(0.4, Agreement.CohensKappa(pairs), 12);
    }

    [Fact]
    public void KappaOfThreeCategoriesMatchesTheHandComputation()
    {
        // 10 comparisons: A/A 4, B/B 3, tie/tie 1, A/B 1, B/A 1. p_o = 0.8; each judge: A 5, B 4, tie 1;
        // p_e = 0.25 + 0.16 + 0.01 = 0.42; kappa = 0.38/0.58 = 0.655172...
        var pairs = Pairs((PairVerdict.A, PairVerdict.A, 4), (PairVerdict.B, PairVerdict.B, 3), (PairVerdict.Tie, PairVerdict.Tie, 1),
            (PairVerdict.A, PairVerdict.B, 1), (PairVerdict.B, PairVerdict.A, 1));
        Assert.Equal(0.38 / 0.58, Agreement.CohensKappa(pairs), 12);
    }

    [Fact]
    public void KappaIsOneForPerfectAgreementAndNegativeBelowChance()
    {
        Assert.Equal(1.0, Agreement.CohensKappa(Pairs(("a", "a", 3), ("b", "b", 2))), 12);
        // always opposite on a balanced pair of labels: p_o = 0, p_e = 0.5, kappa = -1
        Assert.Equal(-1.0, Agreement.CohensKappa(Pairs(("a", "b", 2), ("b", "a", 2))), 12);
    }

    [Fact]
    public void KappaIsUndefinedWithNoPairsOrWhenChanceAgreementIsCertain()
    {
        Assert.True(double.IsNaN(Agreement.CohensKappa(new List<(string, string)>())));
        Assert.True(double.IsNaN(Agreement.CohensKappa(Pairs(("a", "a", 5)))));
    }

    [Fact]
    public void BetweenJudgesLeavesOutComparisonsWithoutAVerdict()
    {
        PairVerdict[] first = [PairVerdict.A, PairVerdict.B, PairVerdict.Unparseable, PairVerdict.A, PairVerdict.Tie];
        PairVerdict[] second = [PairVerdict.A, PairVerdict.A, PairVerdict.B, PairVerdict.Unparseable, PairVerdict.Tie];
        var a = Agreement.BetweenJudges(first, second);
        Assert.Equal((3, 2, 2), (a.Compared, a.Equal, a.Excluded));
        Assert.Equal(2 / 3.0, a.Share, 12);
        // compared: (A,A) (B,A) (T,T): p_o = 2/3; first A 1/3 B 1/3 T 1/3, second A 2/3 T 1/3; p_e = 2/9 + 1/9 = 1/3; kappa = 0.5
        Assert.Equal(0.5, a.Kappa, 12);
        Assert.Throws<ArgumentException>(() => Agreement.BetweenJudges(first, second[..4]));
    }

    [Fact]
    public void PositionsCountConsistentPairsAndFirstPositionWins()
    {
        static PairOutcome O(int a, int b, PairVerdict v) => new(new PairwiseComparison(a, b, ""), null, v);
        var outcomes = new List<PairOutcome>
        {
            O(0, 1, PairVerdict.A), O(1, 0, PairVerdict.B),           // 0 wins both orders: consistent
            O(0, 2, PairVerdict.A), O(2, 0, PairVerdict.A),           // A wins both orders: inconsistent
            O(1, 2, PairVerdict.Tie), O(2, 1, PairVerdict.Unparseable), // one order without verdict: not a pair
        };
        var bias = Agreement.Positions([outcomes]);
        Assert.Equal((2, 1), (bias.Pairs, bias.Consistent));
        Assert.Equal((4, 3), (bias.Decided, bias.FirstWins));
        Assert.Equal(0.5, bias.Agreement);
        Assert.Equal(0.75, bias.FirstShare);
        Assert.True(double.IsNaN(Agreement.Positions([]).Agreement));
    }
}
