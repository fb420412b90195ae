using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Kernels;
using K2RL.Model;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench train</c>: training throughput of one model config on random tokens: forward + backward over
/// --accum micro-batches, then one optimizer step (MuonClip by default, as the pretraining job runs it: gradient
/// clip, AdamW + Muon, QK-Clip, bias rule; or Muon without the clip, or plain AdamW), with where the time goes.
/// Results to stdout (one JSON object with --json), progress to stderr.
/// </summary>
public sealed class BenchTrainCommand : ICommandProvider
{
    public string Group => "bench";

    internal sealed record Options(string Config, int Batch, int Seq, int Steps, int Warmup, ulong Seed, bool Json,
        string Optimizer = "muonclip", int Accum = 1);

    /// <summary>One timed step's wall-clock split (seconds).</summary>
    private sealed record StepTimes(double Zero, double ForwardBackward, double NewtonSchulz, double Muon, double Other, double QkClip)
    {
        public double Optimizer => Muon + Other + QkClip;

        public double Step => Zero + ForwardBackward + Optimizer;

        public static StepTimes operator +(StepTimes a, StepTimes b) => new(a.Zero + b.Zero, a.ForwardBackward + b.ForwardBackward,
            a.NewtonSchulz + b.NewtonSchulz, a.Muon + b.Muon, a.Other + b.Other, a.QkClip + b.QkClip);

        public StepTimes Over(int n) => new(Zero / n, ForwardBackward / n, NewtonSchulz / n, Muon / n, Other / n, QkClip / n);
    }

    public IEnumerable<Command> Build(CliContext context)
    {
        var config = new Option<string>("--config") { Description = "Model config.json (e.g. configs/models/k2-nano.json)", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 8 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps") { Description = "Timed steps", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed warmup steps", DefaultValueFactory = _ => 2 };
        var seed = new Option<ulong>("--seed") { Description = "Weight and data seed", DefaultValueFactory = _ => 1UL };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var optimizer = new Option<string>("--optimizer")
        {
            Description = "muonclip (Muon + QK-Clip, the pretraining default), muon, or adamw", DefaultValueFactory = _ => "muonclip",
        };
        optimizer.AcceptOnlyFromAmong("muonclip", "muon", "adamw");
        var accum = new Option<int>("--accum") { Description = "Micro-batches of batch×seq per optimizer step (gradient accumulation)", DefaultValueFactory = _ => 1 };
        var command = new Command("train", "Training throughput: forward + backward + optimizer step (tokens/s, per-phase breakdown)")
        {
            config, batch, seq, steps, warmup, seed, json, optimizer, accum,
        };
        command.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(Run(context, new Options(
            r.GetValue(config)!, r.GetValue(batch), r.GetValue(seq), r.GetValue(steps), r.GetValue(warmup), r.GetValue(seed),
            r.GetValue(json), r.GetValue(optimizer)!, r.GetValue(accum)), ct)));
        yield return command;
    }

    internal static int Run(CliContext context, Options o, CancellationToken ct = default)
    {
        if (o.Batch <= 0 || o.Seq <= 0 || o.Steps <= 0 || o.Warmup < 0 || o.Accum <= 0)
        {
            throw new K2Exception($"--batch ({o.Batch}), --seq ({o.Seq}), --steps ({o.Steps}) and --accum ({o.Accum}) must be > 0, --warmup ({o.Warmup}) >= 0");
        }

        var config = ModelConfig.Load(o.Config);
        if (o.Seq > config.MaxPositionEmbeddings)
        {
            throw new K2Exception($"--seq {o.Seq} exceeds the model's max_position_embeddings {config.MaxPositionEmbeddings}");
        }

        var model = new K2Model(config);
        model.InitializeWeights(o.Seed);
        int N = o.Batch * o.Seq, K = o.Accum;
        var rng = new Random((int)(o.Seed & 0x7fffffff));
        var stream = new int[K * N + 1];
        for (int i = 0; i < stream.Length; i++)
        {
            stream[i] = rng.Next(config.VocabSize);
        }

        var tokens = new int[N];
        var targets = new int[N];
        Action<int, int[], int[]> fill = (k, x, y) =>
        {
            stream.AsSpan(k * N, N).CopyTo(x);
            stream.AsSpan(k * N + 1, N).CopyTo(y);
        };
        var stepper = new Stepper(model, o.Optimizer);
        context.Error.WriteLine(
            $"bench train: {Path.GetFileName(o.Config)} B={o.Batch} T={o.Seq} × {K} micro-batches, {o.Optimizer} ({model.Layout.ParameterCount:N0} parameters, " +
            $"{model.Layout.ActivatedParameterCount:N0} activated), {KernelThreads.Count} threads, {o.Warmup} warmup + {o.Steps} steps");

        var total = new StepTimes(0, 0, 0, 0, 0, 0);
        using var self = Process.GetCurrentProcess();
        var cpuStart = TimeSpan.Zero;
        float firstLoss = float.NaN, lastLoss = float.NaN;
        for (int step = 0; step < o.Warmup + o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            if (step == o.Warmup)
            {
                model.Profile.Reset();
                total = new StepTimes(0, 0, 0, 0, 0, 0);
                self.Refresh();
                cpuStart = self.TotalProcessorTime;
            }

            var (loss, times) = stepper.Step(K, tokens, targets, o.Batch, o.Seq, fill);
            total += times;
            if (float.IsNaN(firstLoss))
            {
                firstLoss = loss;
            }

            lastLoss = loss;
            context.Error.WriteLine($"  step {step + 1,3}{(step < o.Warmup ? " (warmup)" : "")}: loss {loss:F4}  {times.Step:F3} s  {K * N / times.Step:F0} tokens/s");
        }

        int n = o.Steps;
        var t = total.Over(n);
        double stepTime = t.Step;
        var process = self;
        process.Refresh();
        if (o.Warmup == 0)
        {
            cpuStart = TimeSpan.Zero;
        }

        double cpuPerStep = (process.TotalProcessorTime - cpuStart).TotalSeconds / n;
        var phases = new JsonObject();
        foreach (var phase in Enum.GetValues<ModelPhase>())
        {
            phases[JsonNamingPolicy.SnakeCaseLower.ConvertName(phase.ToString()) + "_s"] = Round(model.Profile.Seconds(phase) / n);
        }

        double nsShare = stepTime > 0 ? t.NewtonSchulz / stepTime : 0;
        var result = new JsonObject
        {
            ["train_tokens_per_s"] = Math.Round(K * N / stepTime, 1),
            ["step_s"] = Round(stepTime),
            ["peak_memory_bytes"] = process.PeakWorkingSet64,
            ["forward_backward_s"] = Round(t.ForwardBackward),
            ["optimizer_s"] = Round(t.Optimizer),
            ["zero_grad_s"] = Round(t.Zero),
            ["newton_schulz_s"] = Round(t.NewtonSchulz),
            ["muon_other_s"] = Round(t.Muon - t.NewtonSchulz),
            ["optimizer_rest_s"] = Round(t.Other),
            ["qk_clip_s"] = Round(t.QkClip),
            ["ns_share_of_step"] = Math.Round(nsShare, 4),
            ["optimizer"] = o.Optimizer,
            ["accum"] = K,
            ["tokens_per_step"] = K * N,
            ["process_cpu_s_per_step"] = Round(cpuPerStep),
            ["phases_s"] = phases,
            ["config"] = o.Config,
            ["batch"] = o.Batch,
            ["seq"] = o.Seq,
            ["steps"] = n,
            ["threads"] = KernelThreads.Count,
            ["parameters"] = model.Layout.ParameterCount,
            ["activated_parameters"] = model.Layout.ActivatedParameterCount,
            ["loss_first"] = firstLoss,
            ["loss_last"] = lastLoss,
        };
        if (o.Json)
        {
            context.Out.WriteLine(result.ToJsonString());
        }
        else
        {
            context.Out.WriteLine($"train tokens/s   {K * N / stepTime,10:F0}  ({o.Optimizer}, {K} × {o.Batch}×{o.Seq} = {K * N} tokens per optimizer step)");
            context.Out.WriteLine($"step             {stepTime,10:F3} s  (forward+backward {t.ForwardBackward:F3} s, optimizer {t.Optimizer:F3} s, zero grad {t.Zero:F3} s)");
            context.Out.WriteLine($"optimizer        Newton–Schulz {t.NewtonSchulz:F3} s ({nsShare:P1} of the step), rest of Muon {t.Muon - t.NewtonSchulz:F3} s, " +
                $"AdamW + clip + bias rule {t.Other:F3} s, QK-Clip {t.QkClip:F3} s");
            context.Out.WriteLine($"process CPU      {cpuPerStep,10:F3} s per step (all threads)");
            context.Out.WriteLine($"peak memory      {process.PeakWorkingSet64 / (1024.0 * 1024.0),10:F0} MiB");
            foreach (var phase in Enum.GetValues<ModelPhase>())
            {
                context.Out.WriteLine($"  {phase,-22} {model.Profile.Seconds(phase) / n,8:F3} s");
            }
        }

        return 0;
    }

    /// <summary>
    /// One optimizer step as the bench runs it. adamw: the model's chunked AdamW over every trainable tensor (the
    /// bench's original baseline, lr 1e-3). muon / muonclip: the pretraining job's optimizer at its default
    /// settings (lr 0.02): gradient clip, AdamW + Muon, then for muonclip QK-Clip, then the bias rule.
    /// </summary>
    private sealed class Stepper
    {
        private readonly K2Model model;
        private readonly K2ModelAdapter adapter;
        private readonly MicroBatches micro;
        private readonly AdamWOptimizer? adamW;
        private readonly Optimizer? muon;
        private readonly List<(int Offset, int Length)> ranges;

        public Stepper(K2Model model, string kind)
        {
            this.model = model;
            adapter = new K2ModelAdapter(model);
            micro = new MicroBatches(adapter);
            ranges = TrainableRanges(model.Layout);
            if (kind == "adamw")
            {
                adamW = new AdamWOptimizer(model.Parameters.Length);
            }
            else
            {
                muon = new Optimizer(model.Layout, new OptimizerSettings { Kind = kind });
            }
        }

        public (float Loss, StepTimes Times) Step(int K, int[] tokens, int[] targets, int B, int T, Action<int, int[], int[]> fill)
        {
            long t0 = Stopwatch.GetTimestamp();
            model.ZeroGradients();
            long t1 = Stopwatch.GetTimestamp();
            float loss = micro.Run(K, tokens, targets, B, T, fill);
            long t2 = Stopwatch.GetTimestamp();
            double zero = Stopwatch.GetElapsedTime(t0, t1).TotalSeconds, fb = Stopwatch.GetElapsedTime(t1, t2).TotalSeconds;
            if (adamW is not null)
            {
                adamW.BeginStep();
                ApplyOptimizer(adamW, model, ranges, 1e-3f);
                return (loss, new StepTimes(zero, fb, 0, 0, Stopwatch.GetElapsedTime(t2).TotalSeconds, 0));
            }

            var s = muon!.Settings;
            OptimMath.ClipGlobalNorm(model.Gradients, s.GradClip);
            muon.Apply(model.Parameters, model.Gradients, s.Lr);
            long t3 = Stopwatch.GetTimestamp();
            if (s.UsesQkClip)
            {
                QkClip.Apply(model.Parameters, model.Layout, micro.MaxLogits, s.QkClipTau);
            }

            long t4 = Stopwatch.GetTimestamp();
            ExpertBalance.UpdateBiases(model.Parameters, model.Layout, model.Config, micro.ExpertLoad, ExpertBalance.DefaultGamma);
            var timings = muon.LastTimings;
            double optimizer = Stopwatch.GetElapsedTime(t2, t3).TotalSeconds;
            double muonS = timings.MuonMs / 1000;
            double other = optimizer - muonS + Stopwatch.GetElapsedTime(t4).TotalSeconds;
            return (loss, new StepTimes(zero, fb, timings.NewtonSchulzMs / 1000, muonS, other, Stopwatch.GetElapsedTime(t3, t4).TotalSeconds));
        }
    }

    /// <summary>To 0.1 µs: ratios of the printed times (a tiny model steps in well under a millisecond) then agree with the printed ratios.</summary>
    private static double Round(double seconds) => Math.Round(seconds, 7);

    /// <summary>The buffer minus the routing-bias tensors (changed only by the balancing rule), as (offset, length).</summary>
    internal static List<(int Offset, int Length)> TrainableRanges(ParameterLayout layout)
    {
        var ranges = new List<(int, int)>();
        int start = 0;
        foreach (var t in layout.Tensors.Where(t => t.IsRoutingBias))
        {
            if (t.Offset > start)
            {
                ranges.Add((start, (int)t.Offset - start));
            }

            start = (int)(t.Offset + t.Length);
        }

        if (layout.TotalLength > start)
        {
            ranges.Add((start, (int)layout.TotalLength - start));
        }

        return ranges;
    }

    /// <summary>AdamW over the ranges, cut into fixed chunks shared by the model's worker threads.</summary>
    private static void ApplyOptimizer(AdamWOptimizer optimizer, K2Model model, List<(int Offset, int Length)> ranges, float lr)
    {
        const int chunk = 1 << 18;
        var chunks = new List<(int, int)>();
        foreach (var (off, len) in ranges)
        {
            for (int s = 0; s < len; s += chunk)
            {
                chunks.Add((off + s, Math.Min(chunk, len - s)));
            }
        }

        ModelThreads.For(chunks.Count, (i, _) => optimizer.Apply(model.Parameters, model.Gradients, chunks[i].Item1, chunks[i].Item2, lr));
    }
}
