using K2RL.Kernels;
using K2RL.Model.Layers;

namespace K2RL.Model.Inference;

/// <summary>
/// The buffers of a prefill or decode call, reused from call to call, and the state of the call in flight that
/// its per-item thread bodies read (set by Begin, dropped by End). Letters: C rows (tokens of the call),
/// D hidden, V vocab, H heads, Dv value head dim, R kv_lora_rank, Dr rope dim, I dense hidden.
/// </summary>
public sealed partial class DecodeModel
{
    private abstract class Work
    {
        protected Work(DecodeModel m, int capacity, bool fewRows)
        {
            Model = m;
            Capacity = capacity;
            int C = capacity, D = m.D, I = m.config.IntermediateSize;
            Positions = new int[C];
            X = new float[C * D];
            Ln = new float[C * D];
            Tmp = new float[C * D];
            Rstd = new float[C];
            Proj = new MlaProjection(m.config, C, m.ropeCos, m.ropeSin);
            AttnOut = new float[C * m.mla.HDv];
            Logits = new float[C * m.V];
            bool anyDense = m.layerSlots.Any(s => !s.IsMoe);
            G = new float[anyDense ? C * I : 0];
            U = new float[anyDense ? C * I : 0];
            Hd = new float[anyDense ? C * I : 0];
            // decode: the few-row expert products; prefill: the packed GEMM (both row-independent, so batch-independent)
            Moe = m.layerSlots.Any(s => s.IsMoe) ? new MoeBlock(m.config, C, trainable: false, m.Profile, fewRows) : null;
        }

        protected DecodeModel Model { get; }
        public int Capacity { get; }
        public int[] Positions { get; }     // [C]
        public float[] X { get; }           // [C, D] residual stream
        public float[] Ln { get; }          // [C, D] normed
        public float[] Tmp { get; }         // [C, D] sub-block output
        public float[] Rstd { get; }        // [C] (not kept)
        public MlaProjection Proj { get; }  // q, c, k_pe of the C rows
        public float[] AttnOut { get; }     // [C, H*Dv]
        public float[] Logits { get; }      // [C, V] (prefill: the last rows' head)
        public float[] G { get; }           // [C, I]
        public float[] U { get; }           // [C, I]
        public float[] Hd { get; }          // [C, I]
        public MoeBlock? Moe { get; }

        /// <summary>The sequences of the call in flight (empty between calls).</summary>
        public IReadOnlyList<SequenceCache> Seqs { get; protected set; } = [];

        public void End() => Seqs = [];

        /// <summary>The rows [first, first + count) of sequence b in the call in flight.</summary>
        public abstract (int First, int Count) RowsOf(int b);
    }

    /// <summary>Decode: one row per sequence, at most maxBatch.</summary>
    private sealed class DecodeWork : Work
    {
        private readonly float[][] scores, probs;   // per worker [H, maxPos]

        public DecodeWork(DecodeModel m, int maxBatch) : base(m, maxBatch, fewRows: true)
        {
            QCat = new float[maxBatch * m.mla.H * m.mla.RD];
            Ctx = new float[maxBatch * m.mla.H * m.mla.R];
            scores = ForkJoinPool.Shared.PerWorker(m.mla.H * m.maxPos);
            probs = ForkJoinPool.Shared.PerWorker(m.mla.H * m.maxPos);
            AttendSequence = Attend;
        }

        public float[] QCat { get; }        // [C, H, R+Dr] absorbed query | q_pe
        public float[] Ctx { get; }         // [C, H, R] Σ p c

        /// <summary>The layer in flight.</summary>
        public int Layer { get; set; }

        /// <summary>Floats of cache the step's attention reads per layer (decides whether to wake threads).</summary>
        public long AttentionWork { get; private set; }

        /// <summary>ForkJoinPool body: sequence b's absorbed attention of the layer in flight.</summary>
        public Action<int, int> AttendSequence { get; }

        public override (int First, int Count) RowsOf(int b) => (b, 1);

        public void Begin(IReadOnlyList<SequenceCache> seqs)
        {
            var mla = Model.mla;
            Seqs = seqs;
            AttentionWork = 0;
            for (int b = 0; b < seqs.Count; b++)
            {
                Positions[b] = seqs[b].Length;
                AttentionWork += (long)(seqs[b].Length + 1) * mla.H * mla.RD;
            }
        }

        private void Attend(int b, int worker)
        {
            var mla = Model.mla;
            var seq = Seqs[b];
            int HR = mla.H * mla.R, HRD = mla.H * mla.RD;
            // the new token was written already: seq.Length + 1 cached tokens
            MlaAttention.AttendLatents(Ctx.AsSpan(b * HR, HR), scores[worker], probs[worker], QCat.AsSpan(b * HRD, HRD),
                Model.pool, seq, Layer, seq.Length + 1, mla, Model.scale);
        }
    }

    /// <summary>Prefill: the new tokens of every sequence, and every sequence's whole context expanded.</summary>
    private sealed class PrefillWork : Work
    {
        private readonly float[][] scores, probs;   // per worker, max over sequences of [n, ctx]

        public PrefillWork(DecodeModel m, int capacity, int contextCapacity, long scoreCapacity) : base(m, capacity, fewRows: false)
        {
            ContextCapacity = contextCapacity;
            ScoreCapacity = scoreCapacity;
            CtxLatent = new float[contextCapacity * m.mla.R];
            CtxKpe = new float[contextCapacity * m.mla.Dr];
            CtxKv = new float[contextCapacity * m.mla.HKV];
            scores = ForkJoinPool.Shared.PerWorker(scoreCapacity);
            probs = ForkJoinPool.Shared.PerWorker(scoreCapacity);
            Row0 = new int[capacity];
            Count = new int[capacity];
            Start = new int[capacity];
            Ctx0 = new int[capacity];
            MaxLogits = new float[capacity * m.mla.H];
            AttendHead = Attend;
        }

        public int ContextCapacity { get; }
        public long ScoreCapacity { get; }
        public float[] CtxLatent { get; }   // [ctx, R]
        public float[] CtxKpe { get; }      // [ctx, Dr]
        public float[] CtxKv { get; }       // [ctx, H*(Dn+Dv)]

        // the call in flight, per sequence b: its first row, token count, start position and context offset
        public int[] Row0 { get; }
        public int[] Count { get; }
        public int[] Start { get; }
        public int[] Ctx0 { get; }
        public float[] MaxLogits { get; }   // [B, H] max logit per sequence and head of the layer in flight
        public int Rows { get; private set; }
        public int ContextRows { get; private set; }

        /// <summary>ForkJoinPool body: item b·H + h, sequence b's head h.</summary>
        public Action<int, int> AttendHead { get; }

        public override (int First, int Count) RowsOf(int b) => (Row0[b], Count[b]);

        public void Begin(IReadOnlyList<SequenceCache> seqs, ReadOnlySpan<int> counts)
        {
            Seqs = seqs;
            Rows = ContextRows = 0;
            for (int b = 0; b < seqs.Count; b++)
            {
                (Row0[b], Count[b], Start[b], Ctx0[b]) = (Rows, counts[b], seqs[b].Length, ContextRows);
                for (int i = 0; i < counts[b]; i++)
                {
                    Positions[Rows + i] = Start[b] + i;
                }

                Rows += counts[b];
                ContextRows += Start[b] + counts[b];
            }
        }

        private void Attend(int item, int worker)
        {
            var mla = Model.mla;
            int b = item / mla.H, h = item % mla.H;
            int n = Count[b], ctx = Start[b] + n, row0 = Row0[b], c0 = Ctx0[b];
            MaxLogits[item] = MlaAttention.AttendPlain(AttnOut.AsSpan(row0 * mla.HDv + h * mla.Dv), probs[worker].AsSpan(0, n * ctx),
                scores[worker].AsSpan(0, n * ctx), Proj.Q.AsSpan(row0 * mla.HQ + h * mla.QkHead),
                CtxKv.AsSpan(c0 * mla.HKV + h * mla.KvHead), CtxKpe.AsSpan(c0 * mla.Dr), n, ctx, Start[b], mla, Model.scale);
        }
    }
}
