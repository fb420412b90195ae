using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Redis;
using Serilog;
using StackExchange.Redis;

namespace K2RL.Rollout;

/// <summary>
/// Paused rollouts in a Redis hash (<c>{prefix}partial</c>: id → the <see cref="FilePartialRolloutStore"/> JSON), so a
/// rollout paused by one engine continues in any process that reaches the same Redis; with the server's append-only
/// file on they survive its restart. An entry that does not parse is moved to the dead-letter list
/// (<c>{prefix}dead</c>) with a log line and reads as absent: a bad entry never stops the engine.
/// </summary>
public sealed class RedisPartialRolloutStore(RedisConnection redis, string prefix = "k2rl:", ILogger? log = null) : IPartialRolloutStore
{
    private readonly ILogger log = log ?? Serilog.Core.Logger.None;

    public RedisKey Key { get; } = prefix + "partial";

    public RedisKey Dead { get; } = prefix + "dead";

    public void Save(PartialRollout rollout) => redis.Database.HashSet(Key, rollout.Id, FilePartialRolloutStore.Serialize(rollout));

    public bool TryLoad(string id, out PartialRollout? rollout)
    {
        rollout = null;
        var json = redis.Database.HashGet(Key, id);
        if (json.IsNull)
        {
            return false;
        }

        try
        {
            rollout = FilePartialRolloutStore.Deserialize(json!, $"{redis.Url} {Key} field {id}");
            return true;
        }
        catch (CorruptFileException e)
        {
            log.Error("rejected a malformed partial rollout (dead-lettered): {Error}", e.Message);
            var entry = new JsonObject { ["id"] = id, ["kind"] = "partial_rollout", ["reason"] = e.Message, ["payload"] = (string)json! }.ToJsonString();
            var tx = redis.Database.CreateTransaction();
            _ = tx.HashDeleteAsync(Key, id);
            _ = tx.ListRightPushAsync(Dead, entry);
            tx.Execute();
            return false;
        }
    }

    public bool Remove(string id) => redis.Database.HashDelete(Key, id);

    public IReadOnlyList<string> Ids() => redis.Database.HashKeys(Key).Select(k => (string)k!).Order(StringComparer.Ordinal).ToList();
}
