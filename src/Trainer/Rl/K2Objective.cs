namespace K2RL.Trainer.Rl;

/// <summary>
/// The K2 policy objective (SPEC §3, k1.5's policy mirror descent). For a prompt x with K responses y_1..y_K drawn from
/// pi_old:
/// <code>
///   L(x) = (1/K) Σ_i A_i²,   A_i = r_i − rbar − tau · logρ_i,   rbar = mean_i r_i,
///   logρ_i = Σ_t (log pi_theta(y_i,t) − log pi_old(y_i,t)) / n_i       (n_i = |y_i| when length-normalized, else 1)
/// </code>
/// and the batch loss is the mean of L(x) over its P prompts. log pi_old is per token: the value the engine recorded
/// with the weight version that sampled the token (partial rollouts span versions). The gradient for the explicit
/// backward: dL/dlog pi_theta(y_i,t) = −(2 tau / (K·P)) · A_i / n_i, so as a weight on the token's cross-entropy
/// (CE = −log pi): dL/dCE_t = (2 tau / (K·P)) · A_i / n_i. At theta = theta_old this is a policy gradient with a
/// mean baseline; the tau term pulls toward pi_old. No ratio clipping, no value network.
/// </summary>
public static class K2Objective
{
    /// <summary>The mean reward of a group (the baseline rbar).</summary>
    public static double Baseline(ReadOnlySpan<double> rewards)
    {
        double s = 0;
        foreach (double r in rewards)
        {
            s += r;
        }

        return rewards.Length == 0 ? 0 : s / rewards.Length;
    }

    /// <summary>logρ of one response from its summed log-probabilities and its length.</summary>
    public static double LogRatio(double sumLogPiTheta, double sumLogPiOld, int responseTokens, bool lengthNormalized) =>
        (sumLogPiTheta - sumLogPiOld) / (lengthNormalized ? Math.Max(1, responseTokens) : 1);

    /// <summary>A_i = r_i − rbar − tau · logρ_i.</summary>
    public static double Advantage(double reward, double baseline, double tau, double logRatio) => reward - baseline - tau * logRatio;

    /// <summary>The weight dL/dCE on each generated token of a response: (2 tau / (K·P)) · A_i / n_i.</summary>
    public static double TokenWeight(double advantage, double tau, int groupSize, int prompts, int responseTokens, bool lengthNormalized) =>
        2 * tau / ((double)groupSize * prompts) * advantage / (lengthNormalized ? Math.Max(1, responseTokens) : 1);

    /// <summary>The response's share of the batch loss: A_i² / (K·P).</summary>
    public static double LossTerm(double advantage, int groupSize, int prompts) => advantage * advantage / ((double)groupSize * prompts);
}
