using System.Diagnostics;
using K2RL.Model;
using K2RL.Model.IO;

namespace K2RL.Rollout;

/// <summary>
/// The decode benchmark's workload (<see cref="DecodeBenchmark.Run"/>: same config, seed, weights, batch, prompt and
/// new-token counts) served by ONNX Runtime (CPU) from the model <see cref="OnnxExport"/> writes: one call prefills
/// the B prompts, then one call per step appends one token to each of the B sequences through the exported cache,
/// sampling at temperature 1 as the engine does. Same warm-up runs as the engine's benchmark.
/// </summary>
public static class OnnxDecodeBenchmark
{
    /// <param name="DecodeModelSeconds">the part of decode spent inside ONNX Runtime's Run (the rest: sampling).</param>
    public sealed record Result(int Batch, int PromptTokens, int NewTokens, double PrefillSeconds, double DecodeSeconds,
        double DecodeModelSeconds, int Threads, long ModelBytes)
    {
        public double PrefillTokensPerSecond => Batch * (double)PromptTokens / PrefillSeconds;

        public double DecodeTokensPerSecond => Batch * (double)(NewTokens - 1) / DecodeSeconds;

        public double DecodeModelShare => DecodeModelSeconds / DecodeSeconds;
    }

    /// <param name="threads">ONNX Runtime's intra-op threads; by default K2RL's worker count, so both use the same cores.</param>
    public static Result Run(ModelConfig config, int batch, int promptTokens, int newTokens, ulong seed = 1, Action<string>? progress = null,
        int? threads = null)
    {
        if (batch < 1 || promptTokens < 1 || newTokens < 2 || promptTokens + newTokens > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"need batch >= 1, prompt >= 1, new >= 2, prompt + new <= {config.MaxPositionEmbeddings}; got {batch}, {promptTokens}, {newTokens}");
        }

        var model = new K2Model(config);
        model.InitializeWeights(seed);
        string dir = Directory.CreateTempSubdirectory("k2rl-bench-onnx-").FullName;
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            progress?.Invoke("onnxruntime: exporting the model...");
            long bytes = OnnxExport.Save(path, config, model.Parameters);
            int n = threads ?? K2RL.Kernels.ForkJoinPool.Shared.Threads;
            using var ort = new OnnxRuntimeModel(path, config, n);
            var rng = new SamplerRng(seed);
            progress?.Invoke("onnxruntime: warming up...");
            for (int i = 0; i < DecodeBenchmark.WarmupRuns; i++)
            {
                Once(ort, config, batch, promptTokens, newTokens, ref rng);
            }

            progress?.Invoke($"onnxruntime: measuring batch {batch}, prompt {promptTokens}, new {newTokens}...");
            var (prefill, decode, decodeModel) = Once(ort, config, batch, promptTokens, newTokens, ref rng);
            return new Result(batch, promptTokens, newTokens, prefill, decode, decodeModel, n, bytes);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>One full run: (prefill seconds incl. the first sampled token, decode seconds, decode seconds inside Run).</summary>
    private static (double, double, double) Once(OnnxRuntimeModel ort, ModelConfig config, int batch, int promptTokens, int newTokens,
        ref SamplerRng rng)
    {
        int V = config.VocabSize;
        var prompt = new int[batch * promptTokens];
        for (int i = 0; i < prompt.Length; i++)
        {
            prompt[i] = (int)(rng.NextUInt64() % (ulong)V);
        }

        var sampling = new SamplingParams { Temperature = 1f, MaxTokens = newTokens, StopOnRepetition = false };
        var scratch = new int[V];
        var probs = new double[V];
        var next = new int[batch];
        var prefillLogits = new float[batch * promptTokens * V];
        var logits = new float[batch * V];
        ort.Reset();
        var sw = Stopwatch.StartNew();
        ort.Run(prompt, batch, prefillLogits);
        for (int b = 0; b < batch; b++)
        {
            next[b] = Sampler.Sample(prefillLogits.AsSpan(((b + 1) * promptTokens - 1) * V, V), sampling, ref rng, scratch, probs);
        }

        double prefill = sw.Elapsed.TotalSeconds;
        double inModel = 0;
        sw.Restart();
        for (int step = 1; step < newTokens; step++)
        {
            long t0 = Stopwatch.GetTimestamp();
            ort.Run(next, batch, logits);
            inModel += Stopwatch.GetElapsedTime(t0).TotalSeconds;
            for (int b = 0; b < batch; b++)
            {
                next[b] = Sampler.Sample(logits.AsSpan(b * V, V), sampling, ref rng, scratch, probs);
            }
        }

        return (prefill, sw.Elapsed.TotalSeconds, inModel);
    }
}
