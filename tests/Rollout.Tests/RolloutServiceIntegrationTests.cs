using System.Net;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.CheckpointEngine;
using K2RL.Common.Rpc;
using K2RL.Rollout;
using K2RL.Tests.Shared;
using Wire = K2RL.Protos.V1;

namespace K2RL.Rollout.Tests;

/// <summary>
/// The rollout service on a real gRPC server on 127.0.0.1, called with K2RL's client and with @grpc/grpc-js.
/// The decoder is the deterministic double with a step gate, so that "mid-generation" is a fact, not a race.
/// </summary>
public sealed class RolloutServiceIntegrationTests : IAsyncLifetime
{
    private readonly HashDecoder decoder = new(blockTokens: 4, blocks: 256);
    private RolloutService service = null!;
    private GrpcServer server = null!;
    private GrpcChannel rpc = null!;
    private RolloutClient client = null!;

    public async Task InitializeAsync()
    {
        service = new RolloutService(decoder, new InMemoryPartialRolloutStore());
        server = await GrpcServer.Create().AddService(new RolloutGrpcService(service)).AddService(service.Checkpoint).StartAsync();
        rpc = GrpcChannels.Create(server.Address);
        client = new RolloutClient(rpc);
    }

    public async Task DisposeAsync()
    {
        decoder.StepGate?.Release(100_000);
        rpc.Dispose();
        await server.DisposeAsync();
        service.Dispose();
    }

    private static Wire.GenerateRequest Call(string id, int maxTokens, params int[] prompt) => new()
    {
        RequestId = id,
        PromptTokenIds = { prompt },
        Sampling = new Wire.SamplingParams { Temperature = 0.9f, MaxTokens = maxTokens, Seed = 5, StopOnRepetition = false },
    };

    private static int[] Alone(int maxTokens, params int[] prompt)
    {
        var engine = new RolloutEngine(new HashDecoder());
        var h = engine.Submit(new GenerationRequest("x", prompt, new SamplingParams { Temperature = 0.9f, MaxTokens = maxTokens, Seed = 5, StopOnRepetition = false }));
        engine.RunUntilIdle();
        return h.Result!.TokenIds;
    }

    /// <summary>Lets the engine take decode steps one at a time until nothing holds cache blocks.</summary>
    private async Task<Wire.HealthReply> StepUntilNoBlocksAreHeld(SemaphoreSlim gate)
    {
        for (int i = 0; i < 1000; i++)
        {
            var health = await client.HealthAsync();
            if (health.UsedBlocks == 0 && health.Running == 0)
            {
                return health;
            }

            gate.Release();
            await Task.Yield();
        }

        throw new InvalidOperationException("blocks still held after 1000 steps");
    }

    /// <summary>Completes when the service has seen the cancellation of call <paramref name="id"/>.</summary>
    private Task CancellationSeen(string id)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        service.CallCancelled += x =>
        {
            if (x == id)
            {
                seen.TrySetResult();
            }
        };
        return seen.Task;
    }

    /// <summary>Waits for an event the test depends on, failing (not hanging) if it never comes.</summary>
    private async Task Within(Task task, string what)
    {
        try
        {
            await task.WaitAsync(TimeSpan.FromMinutes(1));
        }
        catch (TimeoutException)
        {
            throw new Xunit.Sdk.XunitException($"{what} did not happen within a minute; the service: {service.Health(new Wire.HealthRequest())}");
        }
    }

    /// <summary>
    /// Waits until the service has seen the cancellation (<paramref name="seen"/>), lets the engine step until no
    /// cache block is held, and checks the cancelled count and that every block is back in the pool.
    /// </summary>
    private async Task CancelledAndFreed(Task seen, string what, SemaphoreSlim gate, int cancelledSoFar)
    {
        await Within(seen, what);
        var health = await StepUntilNoBlocksAreHeld(gate);
        Assert.Equal(cancelledSoFar, health.RequestsCancelled);
        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);
    }

    private async Task<Wire.GenerateEvent> FirstEvent(IAsyncEnumerator<Wire.GenerateEvent> events)
    {
        Assert.True(await events.MoveNextAsync());
        return events.Current;
    }

    [Fact]
    public async Task K2rlClientStreamsTheEngineTokens()
    {
        var events = new List<Wire.GenerateEvent>();
        await foreach (var e in client.GenerateAsync(Call("a", 15, 1, 2, 3), new CallOptions(deadline: DateTime.UtcNow.AddSeconds(60))))
        {
            events.Add(e);
        }

        Assert.Equal(Alone(15, 1, 2, 3), events.Where(e => e.Token is not null).Select(e => e.Token.TokenId));
        Assert.Equal(Wire.FinishReason.Length, events[^1].Finished.FinishReason);
        Assert.True(events[^1].Finished.Truncated);
    }

    [Fact]
    public async Task K2rlClientSeesErrorStatuses()
    {
        var bad = Call("bad", 5, 1);
        bad.Sampling.TopP = 1.5f;
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in client.GenerateAsync(bad))
            {
            }
        });
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("top_p", e.Status.Detail);

        // Weights through the checkpoint engine's service on the same server: a stale version is refused, a new one held.
        using var publisher = new NetworkWeightPublisher([server.Address], 1, TensorSpec.Flat(1));
        await Task.Run(() => publisher.Publish(0, [1f]));
        Assert.Contains("FailedPrecondition", Assert.Single(publisher.LastFailures));
        await Task.Run(() => publisher.Publish(4, [0.5f]));
        Assert.Empty(publisher.LastFailures);
        Assert.Equal(4, service.Checkpoint.Assembler.HeldVersion);

        // A malformed frame gets a gRPC status, and the server keeps serving.
        using var http = new HttpClient(new SocketsHttpHandler()) { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        var body = new ByteArrayContentWithType([0, 0, 0, 0, 9, 0xFF, 0xFF, 0xFF]);
        using var response = await http.PostAsync(new Uri(server.Address, "/k2rl.v1.Rollout/Generate"), body);
        await response.Content.ReadAsByteArrayAsync();
        string? status = response.TrailingHeaders.TryGetValues("grpc-status", out var t) ? t.First()
            : response.Headers.TryGetValues("grpc-status", out var h) ? h.First() : null;
        Assert.NotNull(status);
        Assert.NotEqual("0", status);
        Assert.True((await client.HealthAsync()).Serving);
    }

    [Fact]
    public async Task K2rlClientCancellingMidGenerationFreesTheBlocks()
    {
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        using var cts = new CancellationTokenSource();
        var seen = CancellationSeen("c");
        var events = client.GenerateAsync(Call("c", 200, 1, 2), ct: cts.Token).GetAsyncEnumerator();
        var first = await FirstEvent(events); // from the prefill; the engine now waits at the gate
        Assert.NotNull(first.Token);
        Assert.Equal(51, (await client.HealthAsync()).UsedBlocks); // ceil((2 + 200) / 4)
        cts.Cancel();
        var ex = await Record.ExceptionAsync(async () => await events.MoveNextAsync());
        Assert.True(ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled }, $"got {ex}");
        await events.DisposeAsync();
        await CancelledAndFreed(seen, "the service seeing the cancellation of call c", gate, cancelledSoFar: 1);
    }

    [Fact]
    public async Task AStreamAbandonedWithoutCancellationStillFreesItsBlocks()
    {
        // A caller that stops reading (and so disposes the stream) without cancelling: the sequence must not go on
        // generating and holding blocks until max_tokens.
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        var seen = CancellationSeen("abandoned");
        var events = service.GenerateAsync(Call("abandoned", 200, 1, 2), CancellationToken.None).GetAsyncEnumerator();
        Assert.NotNull((await FirstEvent(events)).Token);
        Assert.Equal(51, service.Health(new Wire.HealthRequest()).UsedBlocks);
        await events.DisposeAsync();
        await CancelledAndFreed(seen, "the service cancelling the abandoned stream", gate, cancelledSoFar: 1);
    }

    [Fact]
    public async Task K2rlClientDeadlineMidGenerationIsDeadlineExceededAndFreesTheBlocks()
    {
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        var seen = CancellationSeen("d");
        var events = client.GenerateAsync(Call("d", 200, 3), new CallOptions(deadline: DateTime.UtcNow.AddSeconds(4))).GetAsyncEnumerator();
        Assert.NotNull((await FirstEvent(events)).Token);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await events.MoveNextAsync());
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await events.DisposeAsync();
        await CancelledAndFreed(seen, "the service seeing the deadline of call d", gate, cancelledSoFar: 1);
    }

    [Fact]
    public async Task GrpcJsClientGeneratesAndSeesStatusesDeadlinesAndCancellation()
    {
        string node = ExternalTools.Require("node", "nodejs");
        string interop = ExternalTools.InteropDirectory();

        string proto = Path.Combine(ExternalTools.RepoRoot(), "protos", "k2rl", "v1", "rollout.proto");
        string script = Path.Combine(ExternalTools.RepoRoot(), "tests", "Rollout.Tests", "interop", "rollout_client.js");
        JsonElement RunJs(params string[] scenarios)
        {
            Environment.SetEnvironmentVariable("NODE_PATH", Path.Combine(interop, "node_modules"));
            string stdout = ExternalTools.Run(node, $"\"{script}\" \"{proto}\" 127.0.0.1:{server.Port} {string.Join(' ', scenarios)}", TimeSpan.FromMinutes(2));
            return JsonDocument.Parse(stdout).RootElement;
        }

        var open = await Task.Run(() => RunJs("generate", "invalidTopP", "outOfVocab", "health"));
        var gen = open.GetProperty("generate");
        Assert.Equal(0, gen.GetProperty("code").GetInt32());
        Assert.Equal(Alone(12, 1, 2, 3), gen.GetProperty("tokens").EnumerateArray().Select(t => t.GetProperty("id").GetInt32()));
        Assert.Equal((int)Wire.FinishReason.Length, gen.GetProperty("finished").GetProperty("reason").GetInt32());
        Assert.Equal(3, open.GetProperty("invalidTopP").GetProperty("code").GetInt32());
        Assert.Equal(3, open.GetProperty("outOfVocab").GetProperty("code").GetInt32());
        Assert.Contains("outside the vocabulary", open.GetProperty("outOfVocab").GetProperty("details").GetString());
        Assert.True(open.GetProperty("health").GetProperty("reply").GetProperty("serving").GetBoolean());

        // Now hold the engine after each request's first token.
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        var seen = CancellationSeen("js-cancel");
        var held = await Task.Run(() => RunJs("cancel"));
        Assert.Equal(1, held.GetProperty("cancel").GetProperty("code").GetInt32()); // CANCELLED
        Assert.Single(held.GetProperty("cancel").GetProperty("tokens").EnumerateArray());
        await CancelledAndFreed(seen, "the service seeing grpc-js cancel call js-cancel", gate, cancelledSoFar: 1);

        seen = CancellationSeen("js-deadline");
        held = await Task.Run(() => RunJs("deadline"));
        Assert.Equal(4, held.GetProperty("deadline").GetProperty("code").GetInt32()); // DEADLINE_EXCEEDED
        // It passed mid-generation: tokens had arrived (more than one if gate permits were left over), the end had not.
        Assert.NotEmpty(held.GetProperty("deadline").GetProperty("tokens").EnumerateArray());
        Assert.False(held.GetProperty("deadline").TryGetProperty("finished", out _));
        await CancelledAndFreed(seen, "the service seeing the deadline of grpc-js call js-deadline", gate, cancelledSoFar: 2);
    }

    private sealed class ByteArrayContentWithType : ByteArrayContent
    {
        public ByteArrayContentWithType(byte[] bytes)
            : base(bytes)
        {
            Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        }
    }
}
