using K2RL.Common;
using K2RL.Common.Redis;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using StackExchange.Redis;

namespace K2RL.Rollout.Workers;

/// <summary>
/// What the trainer publishes for its rollout workers in the Redis hash <c>{prefix}model</c> when it starts: its
/// epoch (a new one per trainer start: the weight versions start over), the model config and tokenizer (so a worker
/// needs nothing but the Redis URL), the precision the engines hold the weights at, and how the weights travel.
/// </summary>
public sealed record RolloutModelInfo(long Epoch, ModelConfig Config, BpeTokenizer Tokenizer, WeightPrecision Precision, string Transport, string? ShmName)
{
    public static RedisKey Key(RedisWorkQueue queue) => queue.Prefix + "model";

    public static RedisKey EpochKey(RedisWorkQueue queue) => queue.Prefix + "epoch";

    public async Task SaveAsync(RedisWorkQueue queue)
    {
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-tok-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            Tokenizer.Save(dir);
            await queue.Redis.Database.HashSetAsync(Key(queue),
            [
                new("epoch", Epoch),
                new("config", Config.ToJson()),
                new("tokenizer_ranks", await File.ReadAllTextAsync(Path.Combine(dir, BpeTokenizer.RankFileName))),
                new("tokenizer_config", await File.ReadAllTextAsync(Path.Combine(dir, BpeTokenizer.ConfigFileName))),
                new("precision", Precision == WeightPrecision.Bf16 ? "bf16" : "f32"),
                new("transport", Transport),
                new("shm_name", ShmName ?? ""),
            ]).ConfigureAwait(false);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The published info, or null when no trainer has published yet. Malformed fields are a <see cref="CorruptFileException"/> naming the key.</summary>
    public static async Task<RolloutModelInfo?> LoadAsync(RedisWorkQueue queue)
    {
        var h = (await queue.Redis.Database.HashGetAllAsync(Key(queue)).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => (string)e.Value!);
        if (h.Count == 0)
        {
            return null;
        }

        string source = $"{queue.Redis.Url} key {Key(queue)}";
        string Field(string name) => h.TryGetValue(name, out var v) ? v : throw new CorruptFileException(source, $"field '{name}' is missing");
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-tok-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            Directory.CreateDirectory(dir);
            await File.WriteAllTextAsync(Path.Combine(dir, BpeTokenizer.RankFileName), Field("tokenizer_ranks")).ConfigureAwait(false);
            await File.WriteAllTextAsync(Path.Combine(dir, BpeTokenizer.ConfigFileName), Field("tokenizer_config")).ConfigureAwait(false);
            var config = ModelConfig.Parse(Field("config"), $"{source} field 'config'");
            var tokenizer = BpeTokenizer.Load(dir);
            ModelCheckpoint.CheckTokenizerFits(tokenizer, config, $"the tokenizer in {source}");
            return new RolloutModelInfo(
                long.TryParse(Field("epoch"), out long epoch) ? epoch : throw new CorruptFileException(source, "field 'epoch' is not an integer"),
                config, tokenizer,
                Field("precision") == "bf16" ? WeightPrecision.Bf16 : WeightPrecision.F32,
                Field("transport"),
                Field("shm_name") is { Length: > 0 } shm ? shm : null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
