using System.Diagnostics;
using K2RL.Kernels;
using K2RL.Model;
using K2RL.Model.Inference;

namespace K2RL.Rollout;

/// <summary>Prefill and decode throughput of the rollout engine over the real model with random weights.</summary>
public static class DecodeBenchmark
{
    public sealed record Result(int Batch, int PromptTokens, int NewTokens, double PrefillTokensPerSecond, double DecodeTokensPerSecond,
        double PrefillSeconds, double DecodeSeconds, int Threads, double PrefillCpuSeconds, double DecodeCpuSeconds,
        double DecodeModelSeconds, WeightPrecision Weights)
    {
        /// <summary>The part of decode time spent inside the model's DecodeStep (the rest: sampling and scheduling).</summary>
        public double DecodeModelShare => DecodeModelSeconds / DecodeSeconds;

        /// <summary>Tokens per second of process CPU time: what the figures would be with the CPU to ourselves, one core.</summary>
        public double PrefillTokensPerCpuSecond => Batch * (double)PromptTokens / PrefillCpuSeconds;

        public double DecodeTokensPerCpuSecond => Batch * (double)(NewTokens - 1) / DecodeCpuSeconds;
    }

    /// <summary>
    /// <paramref name="batch"/> requests of <paramref name="promptTokens"/> random tokens each, <paramref name="newTokens"/>
    /// sampled per request (temperature 1). Prefill: the step that admits all of them (prefill + first token);
    /// decode: the steps after, one token per sequence each. Steady state, as in a long-running rollout server:
    /// <see cref="WarmupRuns"/> full-size runs first, so that buffers are sized and the JIT's tiered compilation has
    /// replaced the first, unoptimized code of the hot kernels (a single short warm-up left much of the measured run
    /// in tier-0 code, about half the speed; docs/BENCHMARKS.md "Rollout").
    /// </summary>
    public static Result Run(ModelConfig config, int batch, int promptTokens, int newTokens, ulong seed = 1, Action<string>? progress = null,
        WeightPrecision weights = WeightPrecision.F32)
    {
        if (batch < 1 || promptTokens < 1 || newTokens < 2)
        {
            throw new ArgumentException($"need batch >= 1, prompt >= 1, new >= 2; got {batch}, {promptTokens}, {newTokens}");
        }

        if (promptTokens + newTokens > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"prompt {promptTokens} + new {newTokens} exceeds the context {config.MaxPositionEmbeddings}");
        }

        var model = new K2Model(config);
        model.InitializeWeights(seed);
        int blockTokens = 16;
        int blocks = batch * ((promptTokens + newTokens + blockTokens - 1) / blockTokens);
        var model2 = new ModelDecoder(config, batch, blockTokens, blocks, weights);
        model2.LoadWeights(model.Parameters);
        var decoder = new TimedDecoder(model2);
        var rng = new SamplerRng(seed);
        string prefillPhases = "";

        (double, double, double, double) Once(int n)
        {
            var engine = new RolloutEngine(decoder);
            for (int b = 0; b < batch; b++)
            {
                var prompt = new int[promptTokens];
                for (int i = 0; i < prompt.Length; i++)
                {
                    prompt[i] = (int)(rng.NextUInt64() % (ulong)config.VocabSize);
                }

                engine.Submit(new GenerationRequest($"bench-{b}", prompt,
                    new SamplingParams { Temperature = 1f, MaxTokens = n, Seed = (ulong)b, StopOnRepetition = false }));
            }

            var process = Process.GetCurrentProcess();
            var cpu0 = process.TotalProcessorTime;
            model2.Profile.Reset();
            var sw = Stopwatch.StartNew();
            engine.Step();
            double prefill = sw.Elapsed.TotalSeconds;
            prefillPhases = Phases(model2.Profile);
            process.Refresh();
            var cpu1 = process.TotalProcessorTime;
            if (engine.RunningCount != batch)
            {
                throw new InvalidOperationException($"only {engine.RunningCount} of {batch} sequences were admitted");
            }

            sw.Restart();
            decoder.DecodeSeconds = 0;
            model2.Profile.Reset();
            engine.RunUntilIdle();
            double decode = sw.Elapsed.TotalSeconds;
            process.Refresh();
            var cpu2 = process.TotalProcessorTime;
            return (prefill, decode, (cpu1 - cpu0).TotalSeconds, (cpu2 - cpu1).TotalSeconds);
        }

        progress?.Invoke("warming up...");
        for (int i = 0; i < WarmupRuns; i++)
        {
            Once(newTokens);
        }

        progress?.Invoke($"measuring batch {batch}, prompt {promptTokens}, new {newTokens}...");
        var (prefillSeconds, decodeSeconds, prefillCpu, decodeCpu) = Once(newTokens);
        progress?.Invoke("prefill phases (s): " + prefillPhases);
        progress?.Invoke("decode phases (s): " + Phases(model2.Profile));
        return new Result(batch, promptTokens, newTokens,
            batch * (double)promptTokens / prefillSeconds,
            batch * (double)(newTokens - 1) / decodeSeconds,
            prefillSeconds, decodeSeconds, ForkJoinPool.Shared.Threads, prefillCpu, decodeCpu, decoder.DecodeSeconds, weights);
    }

    /// <summary>Full-size runs before the measured one.</summary>
    public const int WarmupRuns = 2;

    private static string Phases(StepProfile profile) =>
        string.Join(", ", Enum.GetValues<ModelPhase>().Select(p => $"{p} {profile.Seconds(p):F3}"));

    private sealed class TimedDecoder(IDecoder inner) : DecoderDecorator(inner)
    {
        public double DecodeSeconds { get; set; }

        public override void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits)
        {
            long t0 = Stopwatch.GetTimestamp();
            Inner.DecodeStep(seqs, tokens, logits);
            DecodeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
    }
}
