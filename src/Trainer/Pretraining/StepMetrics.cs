using System.Text;
using System.Text.Json;
using K2RL.Trainer.Training;

namespace K2RL.Trainer.Pretraining;

/// <summary>One line of metrics.jsonl.</summary>
public sealed record StepMetrics
{
    /// <summary>The metrics line of one <see cref="TrainStep"/> (pretraining and SFT): its result, the wall time, the tokens.</summary>
    public static StepMetrics Of(long step, float loss, double lr, TrainStepResult r, double ms, long stepTokens, long tokens) => new()
    {
        Step = step,
        Loss = loss,
        Lr = lr,
        GradNorm = r.GradNorm,
        MaxLogit = r.MaxLogit,
        ClippedHeads = r.ClippedHeads,
        ExpertLoadMaxOverMean = r.ExpertLoadMaxOverMean,
        BalanceLoss = r.BalanceLoss,
        TokensPerS = stepTokens / Math.Max(1e-9, ms / 1000),
        Tokens = tokens,
        Skipped = r.Skipped,
        StepMs = ms,
        ForwardBackwardMs = (r.Times.Zero + r.Times.ForwardBackward) * 1000,
        OptimizerMs = r.Skipped ? 0 : r.Times.Optimizer * 1000,
        NewtonSchulzMs = r.Times.NewtonSchulz * 1000,
        TokensPerStep = stepTokens,
    };

    public long Step { get; init; }

    public float Loss { get; init; }

    public double Lr { get; init; }

    public double GradNorm { get; init; }

    public float MaxLogit { get; init; }

    public int ClippedHeads { get; init; }

    public double ExpertLoadMaxOverMean { get; init; }

    public double TokensPerS { get; init; }

    public long Tokens { get; init; }

    public bool Skipped { get; init; }

    public double StepMs { get; init; }

    public double ForwardBackwardMs { get; init; }

    public double OptimizerMs { get; init; }

    /// <summary>The part of <see cref="OptimizerMs"/> spent in Newton–Schulz (0 for AdamW).</summary>
    public double NewtonSchulzMs { get; init; }

    /// <summary>Tokens this optimizer step consumed: grad_accum_steps · batch_size · seq_len.</summary>
    public long TokensPerStep { get; init; }

    /// <summary>The sequence-wise balance loss (balance.seq_aux_alpha; 0 when off), not included in <see cref="Loss"/>.</summary>
    public float BalanceLoss { get; init; }

    public string ToJson()
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("step", Step);
            WriteFloat(w, "loss", Loss);
            w.WriteNumber("lr", Lr);
            WriteDouble(w, "grad_norm", GradNorm);
            WriteFloat(w, "max_logit", MaxLogit);
            w.WriteNumber("clipped_heads", ClippedHeads);
            w.WriteNumber("expert_load_max_over_mean", Math.Round(ExpertLoadMaxOverMean, 5));
            w.WriteNumber("tokens_per_s", Math.Round(TokensPerS, 1));
            w.WriteNumber("tokens", Tokens);
            w.WriteBoolean("skipped", Skipped);
            w.WriteNumber("step_ms", Math.Round(StepMs, 2));
            w.WriteNumber("fwd_bwd_ms", Math.Round(ForwardBackwardMs, 2));
            w.WriteNumber("optimizer_ms", Math.Round(OptimizerMs, 2));
            w.WriteNumber("ns_ms", Math.Round(NewtonSchulzMs, 2));
            w.WriteNumber("tokens_per_step", TokensPerStep);
            WriteFloat(w, "balance_loss", BalanceLoss);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Non-finite values are written as null (JSON has no NaN).</summary>
    private static void WriteFloat(Utf8JsonWriter w, string name, float v)
    {
        if (float.IsFinite(v))
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static void WriteDouble(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v))
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    public static StepMetrics Parse(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var r = doc.RootElement;
        double D(string k) => r.TryGetProperty(k, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : double.NaN;
        return new StepMetrics
        {
            Step = r.GetProperty("step").GetInt64(),
            Loss = r.TryGetProperty("loss", out var l) && l.ValueKind == JsonValueKind.Number ? l.GetSingle() : float.NaN,
            Lr = D("lr"),
            GradNorm = D("grad_norm"),
            MaxLogit = (float)D("max_logit"),
            ClippedHeads = (int)D("clipped_heads"),
            ExpertLoadMaxOverMean = D("expert_load_max_over_mean"),
            TokensPerS = D("tokens_per_s"),
            Tokens = r.TryGetProperty("tokens", out var t) ? t.GetInt64() : 0,
            Skipped = r.TryGetProperty("skipped", out var s) && s.ValueKind == JsonValueKind.True,
            StepMs = D("step_ms"),
            ForwardBackwardMs = D("fwd_bwd_ms"),
            OptimizerMs = D("optimizer_ms"),
            NewtonSchulzMs = D("ns_ms"),
            TokensPerStep = r.TryGetProperty("tokens_per_step", out var tps) ? tps.GetInt64() : 0,
            BalanceLoss = r.TryGetProperty("balance_loss", out var bl) && bl.ValueKind == JsonValueKind.Number ? bl.GetSingle() : 0f,
        };
    }

    public static List<StepMetrics> ReadAll(string path) =>
        File.Exists(path) ? File.ReadLines(path).Where(l => l.Trim().Length > 0).Select(Parse).ToList() : [];
}
