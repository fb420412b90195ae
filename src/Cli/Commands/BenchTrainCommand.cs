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
using K2RL.Trainer.Training;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench train</c>: training throughput of one model config on random tokens: forward + backward over
/// --accum micro-batches, then one optimizer step, all through the pretraining job's <see cref="TrainStep"/> (gradient
/// clip, MuonClip by default: AdamW + Muon, QK-Clip, bias rule; or Muon without the clip, or every tensor AdamW) at
/// the optimizer's default settings (lr 0.02; 1e-3 for adamw), with where the time goes.
/// Results to stdout (one JSON object with --json), progress to stderr.
/// </summary>
public sealed class BenchTrainCommand : ICommandProvider
{
    public string Group => "bench";

    internal sealed record Options(string Config, int Batch, int Seq, int Steps, int Warmup, ulong Seed, bool Json,
        string Optimizer = "muonclip", int Accum = 1);

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
        var adapter = new K2ModelAdapter(model);
        int N = o.Batch * o.Seq, K = o.Accum;
        var rng = new Random((int)(o.Seed & 0x7fffffff));
        var stream = new int[K * N + 1];
        for (int i = 0; i < stream.Length; i++)
        {
            stream[i] = rng.Next(config.VocabSize);
        }

        var batches = Enumerable.Range(0, K).Select(k => new MicroBatch(stream[(k * N)..((k + 1) * N)], stream[(k * N + 1)..((k + 1) * N + 1)], o.Batch, o.Seq)).ToArray();
        var settings = new OptimizerSettings { Kind = o.Optimizer };
        if (o.Optimizer == "adamw")
        {
            settings = settings with { Lr = 1e-3f }; // the bench's AdamW baseline rate; Muon's 0.02 is too hot for AdamW
        }
        var trainStep = new TrainStep(adapter, settings, ExpertBalance.DefaultGamma);
        context.Error.WriteLine(
            $"bench train: {Path.GetFileName(o.Config)} B={o.Batch} T={o.Seq} × {K} micro-batches, {o.Optimizer} ({model.Layout.ParameterCount:N0} parameters, " +
            $"{model.Layout.ActivatedParameterCount:N0} activated), {ForkJoinPool.Shared.Threads} threads, {o.Warmup} warmup + {o.Steps} steps");

        var total = TrainStepTimes.None;
        using var self = Process.GetCurrentProcess();
        var cpuStart = TimeSpan.Zero;
        long allocatedStart = GC.GetTotalAllocatedBytes(precise: true);
        float firstLoss = float.NaN, lastLoss = float.NaN;
        for (int step = 0; step < o.Warmup + o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            if (step == o.Warmup)
            {
                model.Profile.Reset();
                total = TrainStepTimes.None;
                self.Refresh();
                cpuStart = self.TotalProcessorTime;
                allocatedStart = GC.GetTotalAllocatedBytes(precise: true);
            }

            var r = trainStep.Run(batches, settings.Lr);
            var times = r.Times;
            float loss = (float)r.Loss;
            total += times;
            if (float.IsNaN(firstLoss))
            {
                firstLoss = loss;
            }

            lastLoss = loss;
            context.Error.WriteLine($"  step {step + 1,3}{(step < o.Warmup ? " (warmup)" : "")}: loss {loss:F4}  {times.Step:F3} s  {K * N / times.Step:F0} tokens/s");
        }

        int n = o.Steps;
        long allocatedPerStep = (GC.GetTotalAllocatedBytes(precise: true) - allocatedStart) / n; // every thread's, this process
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
            ["allocated_bytes_per_step"] = allocatedPerStep,
            ["phases_s"] = phases,
            ["config"] = o.Config,
            ["batch"] = o.Batch,
            ["seq"] = o.Seq,
            ["steps"] = n,
            ["threads"] = ForkJoinPool.Shared.Threads,
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
            context.Out.WriteLine($"allocated        {allocatedPerStep / 1024.0,10:F1} KiB per step (managed heap, all threads)");
            foreach (var phase in Enum.GetValues<ModelPhase>())
            {
                context.Out.WriteLine($"  {phase,-22} {model.Profile.Seconds(phase) / n,8:F3} s");
            }
        }

        return 0;
    }

    /// <summary>To 0.1 µs: ratios of the printed times (a tiny model steps in well under a millisecond) then agree with the printed ratios.</summary>
    private static double Round(double seconds) => Math.Round(seconds, 7);
}
