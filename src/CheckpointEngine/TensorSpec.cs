namespace K2RL.CheckpointEngine;

/// <summary>How a tensor's values travel. Persisted (the manifest, shared memory): values never change.</summary>
public enum WeightDtype
{
    /// <summary>IEEE fp32, 4 bytes: the trainer's own values.</summary>
    F32 = 1,

    /// <summary>bfloat16, 2 bytes: fp32 rounded to nearest even (half the bytes; the receiver widens it back exactly).</summary>
    Bf16 = 2,
}

/// <summary>Sizes of <see cref="WeightDtype"/> values.</summary>
public static class WeightDtypes
{
    public static int Size(this WeightDtype dtype) => dtype switch
    {
        WeightDtype.F32 => 4,
        WeightDtype.Bf16 => 2,
        _ => throw new WeightTransferException($"unknown weight dtype {(int)dtype}"),
    };

    public static bool IsKnown(WeightDtype dtype) => dtype is WeightDtype.F32 or WeightDtype.Bf16;

    public static string Name(this WeightDtype dtype) => dtype == WeightDtype.Bf16 ? "bf16" : "f32";

    /// <summary>"f32" / "fp32" / "bf16".</summary>
    public static WeightDtype Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => WeightDtype.F32,
        "bf16" or "bfloat16" => WeightDtype.Bf16,
        _ => throw new K2RL.Common.ConfigException($"weight dtype '{text}' is not f32 or bf16"),
    };
}

/// <summary>
/// One tensor of a flat fp32 parameter buffer: its name, row-major shape and first element. The caller hands these in
/// (the trainer and rollout engine have the model's <c>ParameterLayout</c>); the checkpoint engine knows no model.
/// </summary>
public sealed record TensorSpec(string Name, long[] Shape, long Offset)
{
    /// <summary>Elements: the product of the shape.</summary>
    public long Length { get; } = Shape.Aggregate(1L, (a, b) => a * b);

    public long End => Offset + Length;

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>A whole buffer as one tensor, for callers without a layout.</summary>
    public static IReadOnlyList<TensorSpec> Flat(long count, string name = "parameters") => [new TensorSpec(name, [count], 0)];

    /// <summary><paramref name="count"/> tensors "t0", "t1", … of <paramref name="size"/> elements back to back (benchmarks, tests).</summary>
    public static IReadOnlyList<TensorSpec> Synthetic(int count, long size) =>
        Enumerable.Range(0, count).Select(i => new TensorSpec($"t{i}", [size], i * size)).ToList();
}

/// <summary>A transfer that cannot be used as sent: the message names the version, bucket, tensor or peer at fault.</summary>
public sealed class WeightTransferException : K2RL.Common.K2Exception
{
    public WeightTransferException(string message) : base(message)
    {
    }

    public WeightTransferException(string message, Exception inner) : base(message, inner)
    {
    }
}
