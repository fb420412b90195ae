using System.Text.Json.Nodes;
using StackExchange.Redis;

namespace K2RL.Common.Redis;

/// <summary>A leased work item: its id, the lease token that acknowledges it, and its payload as stored.</summary>
public sealed record WorkLease(string Id, string Token, string Payload);

/// <summary>What an acknowledgement did.</summary>
public enum AckOutcome
{
    /// <summary>The lease was no longer this worker's (it expired and was re-queued or re-leased): the result is dropped.</summary>
    Refused = 0,

    /// <summary>The result is stored: the item's first result.</summary>
    Accepted = 1,

    /// <summary>A result for the item was already stored (first result wins); this one is dropped.</summary>
    Duplicate = 2,
}

/// <summary>Where an item stands for the producer.</summary>
public enum ItemState
{
    /// <summary>Queued or leased, no result yet.</summary>
    Waiting,

    /// <summary>Its result is stored.</summary>
    Done,

    /// <summary>Neither the item nor a result is in Redis (dead-lettered, or lost with Redis's data): the producer enqueues it again.</summary>
    Gone,
}

/// <summary>The queue's keys' sizes, for status and metrics.</summary>
public sealed record QueueDepths(long Pending, long Leased, long Results, long Items, long DeadLetters);

/// <summary>A registered worker: its id, the JSON it last reported, and the age of that heartbeat (Redis's clock).</summary>
public sealed record WorkerEntry(string Id, string Json, TimeSpan HeartbeatAge);

/// <summary>
/// A work queue with leases in Redis (keys under <see cref="Prefix"/>, see docs/SCALE_OUT.md). The producer stores items
/// (id → payload) and queues their ids; a worker leases ids with a deadline (Redis's clock) and a lease token, renews
/// while it works and acknowledges with the result. Every transition is one Lua script, so it is atomic: an expired
/// lease goes back to the queue (at the next lease or collect), an acknowledgement whose token is no longer the
/// item's lease is refused, the first result per id wins. Items stay until the producer takes their results, so a
/// malformed result can be rejected and the item run again; a malformed item is moved to the dead-letter list.
/// </summary>
public sealed class RedisWorkQueue(RedisConnection redis, string prefix = "k2rl:")
{
    /// <summary>Dead-letter entries kept (the oldest are dropped past this).</summary>
    public const int DeadLetterCap = 1000;

    /// <summary>What a queue name (its keys' prefix without the ':') may be: 1-64 ASCII letters, digits, '-', '_' or '.'.</summary>
    public const string QueueNameRule = "1-64 letters, digits, '-', '_' or '.'";

    public static bool IsQueueName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    public string Prefix { get; } = prefix;

    public RedisConnection Redis { get; } = redis;

    public RedisKey Pending => Prefix + "pending";

    public RedisKey Items => Prefix + "items";

    public RedisKey Leases => Prefix + "leases";

    public RedisKey Owners => Prefix + "owners";

    public RedisKey Results => Prefix + "results";

    public RedisKey Dead => Prefix + "dead";

    public RedisKey Sequence => Prefix + "seq";

    public RedisKey Workers => Prefix + "workers";

    public RedisKey Seen => Prefix + "seen";

    /// <summary>Pub/sub channel: "work" after an enqueue, "done" after an acknowledgement (a wake-up only; polling is the fallback).</summary>
    public RedisChannel Events => RedisChannel.Literal(Prefix + "events");

    private const string Now = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

    // KEYS: leases owners pending. Expired leases back to the queue's head.
    private const string RequeueExpired = """
        local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
        for _, id in ipairs(expired) do
          redis.call('ZREM', KEYS[1], id)
          redis.call('HDEL', KEYS[2], id)
          redis.call('LPUSH', KEYS[3], id)
        end

        """;

    // KEYS: leases owners pending items results seq seen; ARGV: worker, lease ms, max, live window ms.
    private const string LeaseScript = Now + RequeueExpired + """
        local live = math.max(1, redis.call('ZCOUNT', KEYS[7], now - tonumber(ARGV[4]), '+inf'))
        local want = math.min(tonumber(ARGV[3]), math.ceil(redis.call('LLEN', KEYS[3]) / live))
        local out = { #expired }
        local taken = 0
        while taken < want do
          local id = redis.call('LPOP', KEYS[3])
          if not id then break end
          local item = redis.call('HGET', KEYS[4], id)
          if item and redis.call('HEXISTS', KEYS[5], id) == 0 and not redis.call('ZSCORE', KEYS[1], id) then
            local token = ARGV[1] .. '#' .. redis.call('INCR', KEYS[6])
            redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
            redis.call('HSET', KEYS[2], id, token)
            table.insert(out, id)
            table.insert(out, token)
            table.insert(out, item)
            taken = taken + 1
          end
        end
        return out
        """;

    // KEYS: leases owners; ARGV: lease ms, then id token pairs. Returns 1 per pair still held (deadline moved), else 0.
    private const string RenewScript = Now + """
        local out = {}
        for i = 2, #ARGV, 2 do
          if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
            redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
            table.insert(out, 1)
          else
            table.insert(out, 0)
          end
        end
        return out
        """;

    // KEYS: leases owners results; ARGV: id token result channel.
    private const string AckScript = """
        local mine = redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2]
        if mine then
          redis.call('ZREM', KEYS[1], ARGV[1])
          redis.call('HDEL', KEYS[2], ARGV[1])
        end
        if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 2 end
        if not mine then return 0 end
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
        redis.call('PUBLISH', ARGV[4], 'done')
        return 1
        """;

    // KEYS: leases owners items dead; ARGV: id token entry cap channel.
    private const string DeadLetterScript = """
        if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[1])
        redis.call('HDEL', KEYS[3], ARGV[1])
        redis.call('RPUSH', KEYS[4], ARGV[3])
        redis.call('LTRIM', KEYS[4], -tonumber(ARGV[4]), -1)
        redis.call('PUBLISH', ARGV[5], 'done')
        return 1
        """;

    // KEYS: leases owners pending items results; ARGV: ids. Returns per id: 'd' result | 'w' | 'g'.
    private const string CollectScript = Now + RequeueExpired + """
        local out = {}
        for i = 1, #ARGV do
          local r = redis.call('HGET', KEYS[5], ARGV[i])
          if r then
            table.insert(out, 'd')
            table.insert(out, r)
          elseif redis.call('HEXISTS', KEYS[4], ARGV[i]) == 1 then
            table.insert(out, 'w')
            table.insert(out, '')
          else
            table.insert(out, 'g')
            table.insert(out, '')
          end
        end
        return out
        """;

    // KEYS: results pending dead items; ARGV: id entry cap. A malformed result: dead-lettered, the item queued again.
    private const string RejectScript = """
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('RPUSH', KEYS[3], ARGV[2])
        redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
        if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) end
        return 1
        """;

    // KEYS: workers seen; ARGV: id json. Returns Redis's time in ms.
    private const string HeartbeatScript = Now + """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], now, ARGV[1])
        return now
        """;

    // KEYS: workers seen; ARGV: forget after ms. Returns id, json, age ms triples, newest first; drops long-silent ones.
    private const string WorkersScript = Now + """
        local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
        for _, id in ipairs(old) do
          redis.call('ZREM', KEYS[2], id)
          redis.call('HDEL', KEYS[1], id)
        end
        local ids = redis.call('ZREVRANGE', KEYS[2], 0, -1, 'WITHSCORES')
        local out = {}
        for i = 1, #ids, 2 do
          table.insert(out, ids[i])
          table.insert(out, redis.call('HGET', KEYS[1], ids[i]) or '')
          table.insert(out, now - tonumber(ids[i + 1]))
        end
        return out
        """;

    private IDatabase Db => Redis.Database;

    /// <summary>Stores the items and queues their ids (an id already stored is overwritten and queued again).</summary>
    public async Task EnqueueAsync(IReadOnlyList<(string Id, string Payload)> items)
    {
        if (items.Count == 0)
        {
            return;
        }

        var tx = Db.CreateTransaction();
        _ = tx.HashSetAsync(Items, items.Select(i => new HashEntry(i.Id, i.Payload)).ToArray());
        _ = tx.ListRightPushAsync(Pending, items.Select(i => (RedisValue)i.Id).ToArray());
        _ = tx.PublishAsync(Events, "work");
        await tx.ExecuteAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> queued items for <paramref name="worker"/> until Redis's clock passes now +
    /// <paramref name="lease"/>; a fair share only (the queue's length over the workers seen within
    /// <paramref name="liveWindow"/>, rounded up), so one worker does not take what others could run. Expired leases
    /// are re-queued first; <c>Requeued</c> counts them.
    /// </summary>
    public async Task<(IReadOnlyList<WorkLease> Leases, int Requeued)> LeaseAsync(string worker, TimeSpan lease, int max, TimeSpan liveWindow)
    {
        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(LeaseScript, [Leases, Owners, Pending, Items, Results, Sequence, Seen],
            [worker, (long)lease.TotalMilliseconds, max, (long)liveWindow.TotalMilliseconds]).ConfigureAwait(false))!;
        var leases = new List<WorkLease>();
        for (int i = 1; i + 2 < r.Length; i += 3)
        {
            leases.Add(new WorkLease((string)r[i]!, (string)r[i + 1]!, (string)r[i + 2]!));
        }

        return (leases, (int)r[0]);
    }

    /// <summary>Moves the deadlines of the leases still held to now + <paramref name="lease"/>; returns which are still held.</summary>
    public async Task<bool[]> RenewAsync(IReadOnlyList<WorkLease> leases, TimeSpan lease)
    {
        if (leases.Count == 0)
        {
            return [];
        }

        var args = new List<RedisValue> { (long)lease.TotalMilliseconds };
        foreach (var l in leases)
        {
            args.Add(l.Id);
            args.Add(l.Token);
        }

        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(RenewScript, [Leases, Owners], [.. args]).ConfigureAwait(false))!;
        return r.Select(x => (int)x == 1).ToArray();
    }

    /// <summary>Acknowledges a lease with its result: stored only when the lease is still this one and no result is stored yet.</summary>
    public async Task<AckOutcome> AckAsync(WorkLease lease, string result) =>
        (AckOutcome)(int)(await Db.ScriptEvaluateAsync(AckScript, [Leases, Owners, Results],
            [lease.Id, lease.Token, result, Events.ToString()]).ConfigureAwait(false));

    /// <summary>Moves a leased item that cannot be run (malformed) to the dead-letter list, with why; false when the lease was lost.</summary>
    public async Task<bool> DeadLetterAsync(WorkLease lease, string reason) =>
        (int)(await Db.ScriptEvaluateAsync(DeadLetterScript, [Leases, Owners, Items, Dead],
            [lease.Id, lease.Token, DeadEntry(lease.Id, "item", reason, lease.Payload), DeadLetterCap, Events.ToString()]).ConfigureAwait(false)) == 1;

    /// <summary>Where each item stands, with its result when done (expired leases are re-queued first).</summary>
    public async Task<IReadOnlyList<(string Id, ItemState State, string? Result)>> CollectAsync(IReadOnlyList<string> ids)
    {
        if (ids.Count == 0)
        {
            return [];
        }

        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(CollectScript, [Leases, Owners, Pending, Items, Results],
            ids.Select(i => (RedisValue)i).ToArray()).ConfigureAwait(false))!;
        var states = new List<(string, ItemState, string?)>(ids.Count);
        for (int i = 0; i < ids.Count; i++)
        {
            states.Add(((string)r[2 * i]!) switch
            {
                "d" => (ids[i], ItemState.Done, (string)r[(2 * i) + 1]!),
                "w" => (ids[i], ItemState.Waiting, null),
                _ => (ids[i], ItemState.Gone, null),
            });
        }

        return states;
    }

    /// <summary>A result that cannot be read: dead-lettered with why, and its item queued again (it is run anew).</summary>
    public Task RejectResultAsync(string id, string raw, string reason) =>
        Db.ScriptEvaluateAsync(RejectScript, [Results, Pending, Dead, Items], [id, DeadEntry(id, "result", reason, raw), DeadLetterCap]);

    /// <summary>Deletes the items and their results (the producer has taken them).</summary>
    public async Task TakeAsync(IReadOnlyList<string> ids)
    {
        if (ids.Count == 0)
        {
            return;
        }

        var keys = ids.Select(i => (RedisValue)i).ToArray();
        var tx = Db.CreateTransaction();
        _ = tx.HashDeleteAsync(Items, keys);
        _ = tx.HashDeleteAsync(Results, keys);
        await tx.ExecuteAsync().ConfigureAwait(false);
    }

    /// <summary>Drops every queued, leased and finished item (a producer starting over); workers and dead letters stay.</summary>
    public Task ClearAsync() => Db.KeyDeleteAsync([Pending, Items, Leases, Owners, Results]);

    /// <summary>Records a worker's heartbeat (its JSON, stamped with Redis's clock).</summary>
    public Task HeartbeatAsync(string worker, string json) => Db.ScriptEvaluateAsync(HeartbeatScript, [Workers, Seen], [worker, json]);

    /// <summary>Removes a worker's registration (it is stopping).</summary>
    public async Task ForgetWorkerAsync(string worker)
    {
        var tx = Db.CreateTransaction();
        _ = tx.HashDeleteAsync(Workers, worker);
        _ = tx.SortedSetRemoveAsync(Seen, worker);
        await tx.ExecuteAsync().ConfigureAwait(false);
    }

    /// <summary>The registered workers, newest heartbeat first; ones silent longer than <paramref name="forgetAfter"/> are removed.</summary>
    public async Task<IReadOnlyList<WorkerEntry>> WorkersAsync(TimeSpan forgetAfter)
    {
        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(WorkersScript, [Workers, Seen], [(long)forgetAfter.TotalMilliseconds]).ConfigureAwait(false))!;
        var workers = new List<WorkerEntry>();
        for (int i = 0; i + 2 < r.Length; i += 3)
        {
            workers.Add(new WorkerEntry((string)r[i]!, (string)r[i + 1]!, TimeSpan.FromMilliseconds((long)r[i + 2])));
        }

        return workers;
    }

    public async Task<QueueDepths> DepthsAsync()
    {
        var batch = Db.CreateBatch();
        var pending = batch.ListLengthAsync(Pending);
        var leased = batch.SortedSetLengthAsync(Leases);
        var results = batch.HashLengthAsync(Results);
        var items = batch.HashLengthAsync(Items);
        var dead = batch.ListLengthAsync(Dead);
        batch.Execute();
        return new QueueDepths(await pending.ConfigureAwait(false), await leased.ConfigureAwait(false), await results.ConfigureAwait(false),
            await items.ConfigureAwait(false), await dead.ConfigureAwait(false));
    }

    /// <summary>The dead-letter entries (JSON: id, kind, reason, payload), oldest first.</summary>
    public async Task<IReadOnlyList<string>> DeadLettersAsync() =>
        (await Db.ListRangeAsync(Dead).ConfigureAwait(false)).Select(v => (string)v!).ToList();

    private static string DeadEntry(string id, string kind, string reason, string payload) => new JsonObject
    {
        ["id"] = id,
        ["kind"] = kind,
        ["reason"] = reason,
        ["payload"] = payload.Length > 4096 ? payload[..4096] + "…" : payload,
        ["at"] = DateTime.UtcNow.ToString("O"),
    }.ToJsonString();
}
