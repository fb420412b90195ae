using Serilog;
using StackExchange.Redis;

namespace K2RL.Common.Redis;

/// <summary>
/// A Redis server named by a <c>redis://HOST[:PORT][/DB]</c> URL: parsed with errors that name the URL, connected
/// once (an unreachable server at start is a <see cref="K2Exception"/> naming the URL), then kept by
/// StackExchange.Redis, which reconnects by itself after a restart; calls in between fail and go through
/// <see cref="RetryAsync{T}"/>.
/// </summary>
public sealed class RedisConnection : IAsyncDisposable
{
    private readonly ConnectionMultiplexer mux;

    private RedisConnection(string url, ConnectionMultiplexer mux, int db)
    {
        Url = url;
        this.mux = mux;
        Database = mux.GetDatabase(db);
    }

    /// <summary>The URL as given (logs and errors name it).</summary>
    public string Url { get; }

    public IDatabase Database { get; }

    public ISubscriber Subscriber => mux.GetSubscriber();

    public bool IsConnected => mux.IsConnected;

    /// <summary>Parses <paramref name="url"/>: scheme redis, a host, a port (default 6379), an optional database number.</summary>
    public static (string Host, int Port, int Db) Parse(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != "redis" || uri.Host.Length == 0)
        {
            throw new ConfigException($"'{url}' is not a Redis URL (redis://HOST[:PORT][/DB])");
        }

        string path = uri.AbsolutePath.Trim('/');
        int db = 0;
        if (path.Length > 0 && (!int.TryParse(path, out db) || db is < 0 or > 15))
        {
            throw new ConfigException($"'{url}': the database '{path}' is not a number in [0, 15]");
        }

        if (uri.UserInfo.Length > 0 || uri.Query.Length > 0)
        {
            throw new ConfigException($"'{url}': credentials and options in the URL are not supported (give redis://HOST:PORT/DB; a password goes in {PasswordVariable})");
        }

        return (uri.Host, uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port, db);
    }

    /// <summary>The environment variable a Redis password is read from (never from the URL or a job file, so it is never logged).</summary>
    public const string PasswordVariable = "K2RL_REDIS_PASSWORD";

    /// <summary>
    /// Connects; a server that does not answer within <paramref name="timeout"/> is a <see cref="K2Exception"/> naming
    /// the URL, and so is one that refuses the password. <paramref name="password"/>: null reads
    /// <see cref="PasswordVariable"/> (unset or empty: none; a server started with <c>requirepass</c> then refuses).
    /// </summary>
    public static async Task<RedisConnection> ConnectAsync(string url, TimeSpan? timeout = null, string? password = null)
    {
        var (host, port, db) = Parse(url);
        password ??= Environment.GetEnvironmentVariable(PasswordVariable) is { Length: > 0 } fromEnv ? fromEnv : null;
        int ms = (int)(timeout ?? TimeSpan.FromSeconds(5)).TotalMilliseconds;
        var options = new ConfigurationOptions
        {
            EndPoints = { { host, port } },
            AbortOnConnectFail = true,
            ConnectTimeout = ms,
            ConnectRetry = 1,
            SyncTimeout = 10_000,
            AsyncTimeout = 10_000,
            KeepAlive = 5,
            ReconnectRetryPolicy = new LinearRetry(200),
            ClientName = "k2rl",
            BacklogPolicy = BacklogPolicy.FailFast,   // no silent queueing while down: calls fail and RetryAsync logs each retry
            Password = password,
        };
        try
        {
            var mux = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
            var connection = new RedisConnection(url, mux, db);
            await connection.Database.PingAsync().ConfigureAwait(false);
            return connection;
        }
        catch (Exception e) when (IsAuthenticationFailure(e))
        {
            throw new K2Exception($"Redis at {url} refused the connection: " + (password is null
                ? $"it requires a password and none was given (set {PasswordVariable})"
                : $"the password (from {PasswordVariable} or the caller) is wrong"), e);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or System.Net.Sockets.SocketException)
        {
            throw new K2Exception($"Redis at {url} is unreachable: {FirstLine(e.Message)}", e);
        }
    }

    /// <summary>
    /// Runs a Redis call, retrying with exponential backoff (50 ms doubling to 2 s) while the server is unreachable,
    /// restarting or loading its AOF; each retry is logged. After <paramref name="giveUpAfter"/> (null: never) it throws
    /// a <see cref="K2Exception"/> naming the URL and <paramref name="what"/>.
    /// </summary>
    public async Task<T> RetryAsync<T>(string what, Func<IDatabase, Task<T>> call, ILogger log, TimeSpan? giveUpAfter, CancellationToken ct)
    {
        var delay = TimeSpan.FromMilliseconds(50);
        var started = DateTime.UtcNow;
        for (int attempt = 1; ; attempt++)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                return await call(Database).ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransient(e))
            {
                if (giveUpAfter is { } limit && DateTime.UtcNow - started > limit)
                {
                    throw new K2Exception($"Redis at {Url}: {what} failed for {limit.TotalSeconds:F0} s: {FirstLine(e.Message)}", e);
                }

                log.Warning("Redis at {Url}: {What} failed ({Error}); retry {Attempt} in {Delay} ms", Url, what, FirstLine(e.Message), attempt, (int)delay.TotalMilliseconds);
                await Task.Delay(delay, ct).ConfigureAwait(false);
                delay = TimeSpan.FromMilliseconds(Math.Min(2000, delay.TotalMilliseconds * 2));
            }
        }
    }

    /// <summary>Errors a later try may not meet: the connection down, a timeout, the server loading its data or shutting down.</summary>
    public static bool IsTransient(Exception e) => e is RedisConnectionException or RedisTimeoutException or TimeoutException
        || (e is RedisServerException s && (s.Message.StartsWith("LOADING", StringComparison.Ordinal) || s.Message.StartsWith("BUSY", StringComparison.Ordinal)
            || s.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal)));

    private static bool IsAuthenticationFailure(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x.Message.Contains("NOAUTH", StringComparison.Ordinal) || x.Message.Contains("WRONGPASS", StringComparison.Ordinal)
                || x.Message.Contains("AuthenticationFailure", StringComparison.Ordinal) || x.Message.Contains("invalid password", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private static string FirstLine(string text) => text.Split('\n')[0].Trim();

    public async ValueTask DisposeAsync() => await mux.DisposeAsync().ConfigureAwait(false);
}
