using System.Diagnostics;

namespace K2RL.Model;

/// <summary>Where a model's time goes, forward and backward together. Wall-clock phases on the calling thread.</summary>
public enum ModelPhase
{
    Embedding,
    AttentionProjections,   // q/kv projections, their norms, RoPE, o_proj (GEMM-bound)
    AttentionCore,          // per (sequence, head): scores, softmax, P·V and their backward
    DenseMlp,
    MoeRouting,             // router GEMM, sigmoid, group-limited top-k, sort/gather/scatter, router backward
    MoeExperts,             // per-expert grouped GEMMs and SwiGLU
    SharedExpert,
    NormsAndResidual,
    HeadAndLoss,            // model.norm, lm_head, cross-entropy
}

/// <summary>Accumulated ticks per <see cref="ModelPhase"/>; allocation-free. Reset between measurements.</summary>
public sealed class StepProfile
{
    private readonly long[] ticks = new long[Enum.GetValues<ModelPhase>().Length];

    public static long Now => Stopwatch.GetTimestamp();

    /// <summary>Adds the time since <paramref name="start"/> to a phase and returns the current timestamp.</summary>
    public long Lap(ModelPhase phase, long start)
    {
        long now = Stopwatch.GetTimestamp();
        ticks[(int)phase] += now - start;
        return now;
    }

    public double Seconds(ModelPhase phase) => ticks[(int)phase] / (double)Stopwatch.Frequency;

    public void Reset() => Array.Clear(ticks);
}
