using System.Buffers.Binary;
using System.Diagnostics;
using K2RL.Common;
using K2RL.Kernels;
using K2RL.Model;

namespace K2RL.Trainer.Optim;

/// <summary>Optimizer hyperparameters (job file section `optimizer`). lr comes from the schedule each step.</summary>
public sealed record OptimizerSettings
{
    /// <summary>"muonclip" (Muon + QK-Clip), "muon" (no clip) or "adamw" (every tensor AdamW).</summary>
    public string Kind { get; init; } = "muonclip";

    public float Lr { get; init; } = 0.02f;

    public float WeightDecay { get; init; } = 0.1f;

    public float Momentum { get; init; } = 0.95f;

    public bool Nesterov { get; init; } = true;

    public int NsSteps { get; init; } = 5;

    public float Beta1 { get; init; } = 0.9f;

    public float Beta2 { get; init; } = 0.95f;

    public float Eps { get; init; } = 1e-8f;

    /// <summary>QK-Clip threshold on the max pre-softmax logit (K2: 100).</summary>
    public float QkClipTau { get; init; } = 100f;

    /// <summary>Global gradient-norm clip; 0 turns it off.</summary>
    public float GradClip { get; init; } = 1f;

    public bool UsesMuon => Kind is "muonclip" or "muon";

    public bool UsesQkClip => Kind == "muonclip";
}

/// <summary>Wall-clock split of one optimizer step (ms): AdamW and bookkeeping, the Muon matrices, and the part of
/// the latter spent in Newton–Schulz (the Muon wall time apportioned by the workers' own NS share).</summary>
public sealed record OptimizerTimings(double OtherMs, double MuonMs, double NewtonSchulzMs);

/// <summary>
/// The thin stateful wrapper: walks the layout once per step and applies <see cref="OptimMath.MuonUpdate"/>
/// or <see cref="AdamW.Update"/> to each tensor as <see cref="ParameterRouting"/> says. State is two
/// layout-sized buffers (Muon momentum / Adam first moment share <see cref="M"/>; <see cref="V"/> is Adam's
/// second moment) and the step count. Muon matrices are independent, so they run side by side: each matrix
/// on one thread (its GEMMs single-threaded, working set in that core's cache), matrices dealt to a fixed set
/// of parts by a static round-robin over the size-sorted list. Each matrix's arithmetic is fixed, so the
/// result does not depend on the thread count. Scratch is per worker and allocated once.
/// </summary>
public sealed class Optimizer
{
    private const uint Magic = 0x4F32_4B32; // "K2O" + version byte follows
    private const int Version = 1;

    private readonly ParamGroup[] groups;
    private readonly int maxThreads;
    private readonly TensorSlot[][] muonParts;     // [part][i] the Muon matrices of each part, largest first
    private readonly MuonScratch[] scratch;        // [worker]
    private readonly Action<int, int> muonPart;    // cached delegate: Apply allocates nothing per step
    private float[] stepParameters = [];
    private float[] stepGradients = [];
    private float stepLr;

    public Optimizer(ParameterLayout layout, OptimizerSettings settings, int maxThreads = 0)
    {
        Layout = layout;
        Settings = settings;
        groups = ParameterRouting.Resolve(layout, settings.UsesMuon);
        M = layout.NewBuffer();
        V = layout.NewBuffer();
        this.maxThreads = maxThreads > 0 ? maxThreads : Environment.ProcessorCount;
        var muon = layout.Tensors.Where((t, i) => groups[i] == ParamGroup.Muon)
            .OrderByDescending(t => t.Length).ThenBy(t => t.Offset).ToList();
        int parts = Math.Min(muon.Count, MuonPartsPerWorker * ForkJoinPool.Shared.Threads);
        muonParts = Enumerable.Range(0, parts).Select(p => muon.Where((_, i) => i % parts == p).ToArray()).ToArray();
        long largest = muon.Count == 0 ? 0 : muon[0].Length;
        scratch = Enumerable.Range(0, ForkJoinPool.Shared.Threads).Select(_ => new MuonScratch(largest)).ToArray();
        muonPart = RunMuonPart;
    }

    /// <summary>Parts per worker thread: a thread the OS parks for a while delays the step by one part, not half.</summary>
    private const int MuonPartsPerWorker = 4;

    public ParameterLayout Layout { get; }

    public OptimizerSettings Settings { get; }

    /// <summary>Muon momentum or Adam first moment, layout-shaped.</summary>
    public float[] M { get; }

    /// <summary>Adam second moment, layout-shaped (zero for Muon tensors).</summary>
    public float[] V { get; }

    /// <summary>Steps taken (Adam's bias correction uses Step after increment).</summary>
    public long Step { get; private set; }

    public ParamGroup GroupOf(int tensorIndex) => groups[tensorIndex];

    /// <summary>Applies one step with learning rate <paramref name="lr"/>. Gradients are read, not changed.</summary>
    public void Apply(float[] parameters, float[] gradients, float lr)
    {
        long start = Stopwatch.GetTimestamp();
        Step++;
        var s = Settings;
        var tensors = Layout.Tensors;
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            if (groups[i] == ParamGroup.AdamW)
            {
                AdamW.Update(t.Of(parameters), t.Of(gradients), t.Of(M), t.Of(V), Step, lr, s.Beta1, s.Beta2, s.Eps, s.WeightDecay);
            }
        }

        long t0 = Stopwatch.GetTimestamp();
        foreach (var w in scratch)
        {
            w.NsTicks = w.MuonTicks = 0;
        }

        (stepParameters, stepGradients, stepLr) = (parameters, gradients, lr);
        ForkJoinPool.Shared.For(muonParts.Length, muonPart, parallel: maxThreads > 1);
        (stepParameters, stepGradients) = ([], []);
        double muonMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        long ns = scratch.Sum(w => w.NsTicks), all = scratch.Sum(w => w.MuonTicks);
        LastTimings = new OptimizerTimings(
            Stopwatch.GetElapsedTime(start).TotalMilliseconds - muonMs,
            muonMs,
            all > 0 ? muonMs * ns / all : 0);
    }

    /// <summary>Where the last <see cref="Apply"/> spent its time (wall clock, ms).</summary>
    public OptimizerTimings LastTimings { get; private set; } = new(0, 0, 0);

    /// <summary>One part's Muon matrices, one after another on the calling worker, GEMMs single-threaded.</summary>
    private void RunMuonPart(int part, int worker)
    {
        var s = Settings;
        var w = scratch[worker];
        foreach (var t in muonParts[part])
        {
            long t0 = Stopwatch.GetTimestamp();
            int n = t.Rows * t.Cols;
            Span<float> param = t.Of(stepParameters), momentum = t.Of(M);
            ReadOnlySpan<float> grad = t.Of(stepGradients);
            OptimMath.MuonMomentum(w.In.AsSpan(0, n), momentum, grad, s.Momentum, s.Nesterov);
            long t1 = Stopwatch.GetTimestamp();
            NewtonSchulz.Orthogonalize(w.Out.AsSpan(0, n), w.In.AsSpan(0, n), t.Rows, t.Cols, w.Workspace, s.NsSteps, maxThreads: 1);
            long t2 = Stopwatch.GetTimestamp();
            OptimMath.MuonApply(param, w.Out.AsSpan(0, n), t.Rows, t.Cols, stepLr, s.WeightDecay);
            w.NsTicks += t2 - t1;
            w.MuonTicks += Stopwatch.GetTimestamp() - t0;
        }
    }

    /// <summary>One worker's Muon buffers (the momentum-mixed input and the NS output of the largest matrix).</summary>
    private sealed class MuonScratch(long length)
    {
        public float[] In { get; } = new float[length];

        public float[] Out { get; } = new float[length];

        public NewtonSchulzWorkspace Workspace { get; } = new();

        public long NsTicks;

        public long MuonTicks;
    }

    /// <summary>Writes the state: magic, version, step, tensor count, then M and V as little-endian floats.</summary>
    public void Save(Stream stream)
    {
        Span<byte> head = stackalloc byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(head, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(head[4..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(head[8..], Step);
        BinaryPrimitives.WriteInt64LittleEndian(head[16..], Layout.TotalLength);
        stream.Write(head);
        WriteFloats(stream, M);
        WriteFloats(stream, V);
    }

    /// <summary>Reads state written by <see cref="Save"/> for the same layout; throws <see cref="CorruptFileException"/> otherwise.</summary>
    public void Load(Stream stream, string path)
    {
        Span<byte> head = stackalloc byte[24];
        if (stream.ReadAtLeast(head, 24, throwOnEndOfStream: false) < 24
            || BinaryPrimitives.ReadUInt32LittleEndian(head) != Magic)
        {
            throw new CorruptFileException(path, "not a K2RL optimizer state (bad magic)");
        }

        int version = BinaryPrimitives.ReadInt32LittleEndian(head[4..]);
        if (version != Version)
        {
            throw new CorruptFileException(path, $"optimizer state version {version}, this build reads {Version}");
        }

        long step = BinaryPrimitives.ReadInt64LittleEndian(head[8..]);
        long total = BinaryPrimitives.ReadInt64LittleEndian(head[16..]);
        if (total != Layout.TotalLength)
        {
            throw new CorruptFileException(path, $"optimizer state holds {total} floats per moment, the model needs {Layout.TotalLength}");
        }

        ReadFloats(stream, M, path);
        ReadFloats(stream, V, path);
        Step = step;
    }

    private static void WriteFloats(Stream stream, float[] data)
    {
        var bytes = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
        }

        stream.Write(bytes);
    }

    private static void ReadFloats(Stream stream, float[] data, string path)
    {
        var bytes = new byte[data.Length * 4];
        if (stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false) < bytes.Length)
        {
            throw new CorruptFileException(path, "optimizer state is truncated");
        }

        for (int i = 0; i < data.Length; i++)
        {
            data[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
        }
    }
}
