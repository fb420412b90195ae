using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

public sealed class K2ObjectiveTests
{
    /// <summary>The batch loss of SPEC §3 written out directly from per-token log-probabilities (the oracle).</summary>
    private static double Loss(double[][] rewards, double[][][] logTheta, double[][][] logOld, double tau, bool normalized)
    {
        int P = rewards.Length;
        double total = 0;
        for (int x = 0; x < P; x++)
        {
            int K = rewards[x].Length;
            double rbar = rewards[x].Average();
            for (int i = 0; i < K; i++)
            {
                double logRho = (logTheta[x][i].Sum() - logOld[x][i].Sum()) / (normalized ? logTheta[x][i].Length : 1);
                double a = rewards[x][i] - rbar - tau * logRho;
                total += a * a / K;
            }
        }

        return total / P;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TokenWeightsAreTheLossGradientWithRespectToEachTokensCrossEntropy(bool normalized)
    {
        var rng = new Random(7);
        const double tau = 0.1;
        int P = 3, K = 4;
        var rewards = Enumerable.Range(0, P).Select(_ => Enumerable.Range(0, K).Select(_ => (double)rng.Next(0, 2)).ToArray()).ToArray();
        var logOld = Enumerable.Range(0, P).Select(_ => Enumerable.Range(0, K).Select(_ =>
            Enumerable.Range(0, rng.Next(1, 9)).Select(_ => -rng.NextDouble() * 3).ToArray()).ToArray()).ToArray();
        var logTheta = logOld.Select(g => g.Select(r => r.Select(v => v + (rng.NextDouble() - 0.5) * 0.4).ToArray()).ToArray()).ToArray();

        double maxDiff = 0;
        for (int x = 0; x < P; x++)
        {
            double rbar = K2Objective.Baseline(rewards[x]);
            for (int i = 0; i < K; i++)
            {
                int n = logTheta[x][i].Length;
                double logRho = K2Objective.LogRatio(logTheta[x][i].Sum(), logOld[x][i].Sum(), n, normalized);
                double a = K2Objective.Advantage(rewards[x][i], rbar, tau, logRho);
                double weight = K2Objective.TokenWeight(a, tau, K, P, n, normalized);
                for (int t = 0; t < n; t++)
                {
                    const double h = 1e-6;
                    double keep = logTheta[x][i][t];
                    logTheta[x][i][t] = keep + h;
                    double up = Loss(rewards, logTheta, logOld, tau, normalized);
                    logTheta[x][i][t] = keep - h;
                    double down = Loss(rewards, logTheta, logOld, tau, normalized);
                    logTheta[x][i][t] = keep;
                    double dLdLogPi = (up - down) / (2 * h);
                    maxDiff = Math.Max(maxDiff, Math.Abs(weight - -dLdLogPi));   // CE = −log pi
                }
            }
        }

        Assert.True(maxDiff < 1e-7, $"max |weight − dL/dCE| = {maxDiff:E3}");
    }

    [Fact]
    public void AtThetaOldTheWeightIsAMeanBaselinePolicyGradient()
    {
        double[] rewards = [1, 0, 0, 1];
        double rbar = K2Objective.Baseline(rewards);
        Assert.Equal(0.5, rbar);
        // logρ = 0: A = r − rbar, and the per-token weight is (2 tau / (K P)) A / n: correct responses are pushed up (negative CE weight means ascending log pi).
        double good = K2Objective.TokenWeight(K2Objective.Advantage(1, rbar, 0.1, 0), 0.1, 4, 1, 10, true);
        double bad = K2Objective.TokenWeight(K2Objective.Advantage(0, rbar, 0.1, 0), 0.1, 4, 1, 10, true);
        Assert.Equal(2 * 0.1 / 4 * 0.5 / 10, good, 12);
        Assert.Equal(-good, bad, 12);
    }

    [Fact]
    public void LossTermsSumToTheSpecLoss()
    {
        double[] rewards = [1, -0.5, 0, 1];
        double rbar = K2Objective.Baseline(rewards);
        double[] logRho = [0.02, -0.1, 0, 0.3];
        double sum = rewards.Select((r, i) => K2Objective.LossTerm(K2Objective.Advantage(r, rbar, 0.1, logRho[i]), 4, 2)).Sum();
        double direct = rewards.Select((r, i) => Math.Pow(r - rbar - 0.1 * logRho[i], 2)).Sum() / 4 / 2;
        Assert.Equal(direct, sum, 12);
    }
}
