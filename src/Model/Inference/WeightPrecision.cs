using K2RL.Common;

namespace K2RL.Model.Inference;

/// <summary>The values an inference model holds its weights at; arithmetic is fp32 either way.</summary>
public enum WeightPrecision
{
    /// <summary>The weights exactly as trained.</summary>
    F32,

    /// <summary>
    /// Rounded to bf16 (routing biases excepted); decode reads the routed experts at half the bytes (see
    /// <see cref="DecodeModel"/>).
    /// </summary>
    Bf16,
}

public static class WeightPrecisions
{
    /// <summary>"f32" or "bf16" (any case).</summary>
    public static WeightPrecision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => WeightPrecision.F32,
        "bf16" or "bfloat16" => WeightPrecision.Bf16,
        _ => throw new ConfigException($"unknown weight precision \"{text}\" (expected f32 or bf16)"),
    };

    public static string Name(this WeightPrecision p) => p == WeightPrecision.Bf16 ? "bf16" : "f32";
}
