using K2RL.Model;
using K2RL.Model.IO;
using Microsoft.ML.OnnxRuntime;

namespace K2RL.Rollout;

/// <summary>
/// A model exported by <see cref="OnnxExport"/> run by ONNX Runtime (CPU), for B sequences that advance together:
/// <see cref="Run"/> appends S tokens to each and returns their logits, feeding the graph's present_* cache
/// outputs back as the next call's past_* inputs without copying them. The reference serving loop for an exported
/// model (docs/ONNX.md), used by the parity tests and by the decode benchmark's onnxruntime backend. Not
/// thread-safe.
/// </summary>
public sealed class OnnxRuntimeModel : IDisposable
{
    private readonly InferenceSession session;
    private readonly RunOptions runOptions = new();
    private readonly ModelConfig config;
    private readonly string[] inputNames, outputNames;
    private IDisposableReadOnlyCollection<OrtValue>? last;     // the previous Run's outputs: logits, then the cache
    private OrtValue[] emptyCache = [];

    /// <param name="threads">ONNX Runtime's intra-op threads; 0 lets it choose (one per physical core).</param>
    public OnnxRuntimeModel(string path, ModelConfig config, int threads = 0)
    {
        this.config = config;
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads };
        session = new InferenceSession(path, options);
        int L = config.NumHiddenLayers;
        inputNames = [OnnxExport.InputIds, .. Enumerable.Range(0, L).SelectMany(l => new[] { OnnxExport.PastLatent(l), OnnxExport.PastKeyRope(l) })];
        outputNames = [OnnxExport.Logits, .. Enumerable.Range(0, L).SelectMany(l => new[] { OnnxExport.PresentLatent(l), OnnxExport.PresentKeyRope(l) })];
        var missing = inputNames.Except(session.InputNames).Concat(outputNames.Except(session.OutputNames)).ToList();
        if (missing.Count > 0)
        {
            throw new ArgumentException($"{path} is not a K2RL export of this config: it lacks {string.Join(", ", missing)}", nameof(path));
        }
    }

    /// <summary>Sequences in the current batch (0 before the first <see cref="Run"/>).</summary>
    public int Batch { get; private set; }

    /// <summary>Tokens cached per sequence.</summary>
    public int CacheLength { get; private set; }

    /// <summary>Forgets the cache: the next <see cref="Run"/> starts B new sequences.</summary>
    public void Reset()
    {
        last?.Dispose();
        last = null;
        CacheLength = 0;
        Batch = 0;
    }

    /// <summary>
    /// Appends tokens [B, S] (row-major) to the B sequences and writes their logits [B, S, V] to
    /// <paramref name="logits"/>. After a <see cref="Reset"/> B may be anything; after that it must stay the same.
    /// </summary>
    public void Run(ReadOnlySpan<int> tokens, int batch, Span<float> logits)
    {
        if (batch <= 0 || tokens.Length == 0 || tokens.Length % batch != 0)
        {
            throw new ArgumentException($"{tokens.Length} tokens do not split into {batch} equal rows", nameof(tokens));
        }

        if (last is not null && batch != Batch)
        {
            throw new ArgumentException($"the cache holds {Batch} sequences, asked for {batch}; Reset first", nameof(batch));
        }

        int S = tokens.Length / batch, V = config.VocabSize;
        if (CacheLength + S > config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"{CacheLength} cached + {S} new tokens exceed max_position_embeddings {config.MaxPositionEmbeddings}");
        }

        if (logits.Length < (long)tokens.Length * V)
        {
            throw new ArgumentException($"logits hold {logits.Length} floats, need {tokens.Length} × {V}", nameof(logits));
        }

        var ids = new long[tokens.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = tokens[i];
        }

        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [batch, S]);
        var inputs = new OrtValue[inputNames.Length];
        inputs[0] = idsValue;
        var cache = last is null ? EmptyCache(batch) : last.Skip(1).ToArray();
        cache.CopyTo(inputs, 1);
        var outputs = session.Run(runOptions, inputNames, inputs, outputNames);
        last?.Dispose();
        last = outputs;
        Batch = batch;
        CacheLength += S;
        outputs[0].GetTensorDataAsSpan<float>()[..(tokens.Length * V)].CopyTo(logits);
    }

    private OrtValue[] EmptyCache(int batch)
    {
        foreach (var v in emptyCache)
        {
            v.Dispose();
        }

        emptyCache = new OrtValue[2 * config.NumHiddenLayers];
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            emptyCache[2 * l] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [batch, 0, config.KvLoraRank]);
            emptyCache[2 * l + 1] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [batch, 0, config.QkRopeHeadDim]);
        }

        return emptyCache;
    }

    public void Dispose()
    {
        last?.Dispose();
        foreach (var v in emptyCache)
        {
            v.Dispose();
        }

        runOptions.Dispose();
        session.Dispose();
    }
}
