using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Kernels;
using K2RL.Model;
using K2RL.Trainer.Optim;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench train</c>: training throughput of one model config, forward + backward + AdamW step on random
/// tokens, with where the time goes. Results to stdout (one JSON object with --json), progress to stderr.
/// </summary>
public sealed class BenchTrainCommand : ICommandProvider
{
    public string Group => "bench";

    internal sealed record Options(string Config, int Batch, int Seq, int Steps, int Warmup, ulong Seed, bool Json);

    public IEnumerable<Command> Build(CliContext context)
    {
        var config = new Option<string>("--config") { Description = "Model config.json (e.g. configs/models/k2-nano.json)", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 8 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps") { Description = "Timed steps", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed warmup steps", DefaultValueFactory = _ => 2 };
        var seed = new Option<ulong>("--seed") { Description = "Weight and data seed", DefaultValueFactory = _ => 1UL };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("train", "Training throughput: forward + backward + AdamW step (tokens/s, per-phase breakdown)")
        {
            config, batch, seq, steps, warmup, seed, json,
        };
        command.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(Run(context, new Options(
            r.GetValue(config)!, r.GetValue(batch), r.GetValue(seq), r.GetValue(steps), r.GetValue(warmup), r.GetValue(seed),
            r.GetValue(json)), ct)));
        yield return command;
    }

    internal static int Run(CliContext context, Options o, CancellationToken ct = default)
    {
        if (o.Batch <= 0 || o.Seq <= 0 || o.Steps <= 0 || o.Warmup < 0)
        {
            throw new K2Exception($"--batch ({o.Batch}), --seq ({o.Seq}) and --steps ({o.Steps}) must be > 0, --warmup ({o.Warmup}) >= 0");
        }

        var config = ModelConfig.Load(o.Config);
        if (o.Seq > config.MaxPositionEmbeddings)
        {
            throw new K2Exception($"--seq {o.Seq} exceeds the model's max_position_embeddings {config.MaxPositionEmbeddings}");
        }

        var model = new K2Model(config);
        model.InitializeWeights(o.Seed);
        int N = o.Batch * o.Seq;
        var rng = new Random((int)(o.Seed & 0x7fffffff));
        var stream = new int[N + 1];
        for (int i = 0; i < stream.Length; i++)
        {
            stream[i] = rng.Next(config.VocabSize);
        }

        var tokens = stream.AsSpan(0, N).ToArray();
        var targets = stream.AsSpan(1, N).ToArray();
        var optimizer = new AdamWOptimizer(model.Parameters.Length);
        var ranges = TrainableRanges(model.Layout);
        const float lr = 1e-3f;
        context.Error.WriteLine(
            $"bench train: {Path.GetFileName(o.Config)} B={o.Batch} T={o.Seq} ({model.Layout.ParameterCount:N0} parameters, " +
            $"{model.Layout.ActivatedParameterCount:N0} activated), {KernelThreads.Count} threads, {o.Warmup} warmup + {o.Steps} steps");

        double fbTotal = 0, optTotal = 0, zeroTotal = 0;
        using var self = Process.GetCurrentProcess();
        var cpuStart = TimeSpan.Zero;
        float firstLoss = float.NaN, lastLoss = float.NaN;
        for (int step = 0; step < o.Warmup + o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            if (step == o.Warmup)
            {
                model.Profile.Reset();
                fbTotal = optTotal = zeroTotal = 0;
                self.Refresh();
                cpuStart = self.TotalProcessorTime;
            }

            long t0 = Stopwatch.GetTimestamp();
            model.ZeroGradients();
            long t1 = Stopwatch.GetTimestamp();
            float loss = model.ForwardBackward(tokens, targets, o.Batch, o.Seq);
            long t2 = Stopwatch.GetTimestamp();
            optimizer.BeginStep();
            ApplyOptimizer(optimizer, model, ranges, lr);
            long t3 = Stopwatch.GetTimestamp();
            zeroTotal += Stopwatch.GetElapsedTime(t0, t1).TotalSeconds;
            fbTotal += Stopwatch.GetElapsedTime(t1, t2).TotalSeconds;
            optTotal += Stopwatch.GetElapsedTime(t2, t3).TotalSeconds;
            if (float.IsNaN(firstLoss))
            {
                firstLoss = loss;
            }

            lastLoss = loss;
            double stepS = Stopwatch.GetElapsedTime(t0, t3).TotalSeconds;
            context.Error.WriteLine($"  step {step + 1,3}{(step < o.Warmup ? " (warmup)" : "")}: loss {loss:F4}  {stepS:F3} s  {N / stepS:F0} tokens/s");
        }

        int n = o.Steps;
        double stepTime = (fbTotal + optTotal + zeroTotal) / n;
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

        var result = new JsonObject
        {
            ["train_tokens_per_s"] = Math.Round(N / stepTime, 1),
            ["step_s"] = Round(stepTime),
            ["peak_memory_bytes"] = process.PeakWorkingSet64,
            ["forward_backward_s"] = Round(fbTotal / n),
            ["optimizer_s"] = Round(optTotal / n),
            ["zero_grad_s"] = Round(zeroTotal / n),
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
            context.Out.WriteLine($"train tokens/s   {N / stepTime,10:F0}");
            context.Out.WriteLine($"step             {stepTime,10:F3} s  (forward+backward {fbTotal / n:F3} s, optimizer {optTotal / n:F3} s, zero grad {zeroTotal / n:F3} s)");
            context.Out.WriteLine($"process CPU      {cpuPerStep,10:F3} s per step (all threads)");
            context.Out.WriteLine($"peak memory      {process.PeakWorkingSet64 / (1024.0 * 1024.0),10:F0} MiB");
            foreach (var phase in Enum.GetValues<ModelPhase>())
            {
                context.Out.WriteLine($"  {phase,-22} {model.Profile.Seconds(phase) / n,8:F3} s");
            }
        }

        return 0;
    }

    private static double Round(double seconds) => Math.Round(seconds, 5);

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
