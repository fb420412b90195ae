using System.Diagnostics;
using K2RL.Common.Metrics;
using K2RL.Common.Rpc;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Model;
using Wire = K2RL.Protos.V1;

namespace K2RL.Rollout;

/// <summary>
/// The cost of the gRPC transport on loopback: a gym Step round trip (<c>k2rl.v1.Gym/Step</c> to an in-process
/// arithmetic environment, whose own step takes microseconds) and a streaming <c>k2rl.v1.Rollout/Generate</c> over a
/// tiny model (k2-test, random weights, one call at a time), so that the transport's share of time-to-first-token and
/// tokens/s is large. Not a test: figures depend on the machine; docs/BENCHMARKS.md records them.
/// </summary>
public static class RpcBenchmark
{
    public sealed record Result(
        int Steps, double StepP50Us, double StepP99Us,
        int Streams, int TokensPerStream, double TtftP50Us, double TtftP99Us, double StreamTokensPerSecond);

    public static async Task<Result> RunAsync(ModelConfig config, int steps, int streams, int tokens, Action<string>? progress = null)
    {
        progress?.Invoke("gym step round trips...");
        var (p50, p99) = await GymStepAsync(steps);
        progress?.Invoke("streaming Generate...");
        var model = new K2Model(config);
        model.InitializeWeights(1);
        var decoder = new ModelDecoder(config, maxBatch: 1);
        decoder.LoadWeights(model.Parameters);
        using var service = new RolloutService(decoder, new InMemoryPartialRolloutStore());
        await using var server = await GrpcServer.Create().AddService(new RolloutGrpcService(service)).AddService(service.Checkpoint).StartAsync();
        using var channel = GrpcChannels.Create(server.Address);
        var client = new RolloutClient(channel);
        var remote = await MeasureStreamsAsync(streams, tokens, r => client.GenerateAsync(r));
        return new Result(steps, p50, p99, streams, tokens, remote.TtftP50, remote.TtftP99, remote.TokensPerSecond);
    }

    private static async Task<(double P50, double P99)> GymStepAsync(int steps)
    {
        await using var server = await RemoteEnvironmentServer.StartAsync(GymRegistry.CreateDefault());
        await using var env = new RemoteEnvironment(server.Address, "arithmetic");
        var local = (TaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("arithmetic");
        var us = new List<double>(steps);
        for (int pass = 0; pass < 2; pass++) // the first pass warms the JIT and the connection
        {
            us.Clear();
            for (int i = 0; i < steps; i++)
            {
                await env.ResetAsync(i);
                await local.ResetAsync(i);
                long t0 = Stopwatch.GetTimestamp();
                var step = await env.StepAsync(local.Task!.Solution);
                us.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                if (step.Info.Correct != true)
                {
                    throw new InvalidOperationException($"gym step {i}: the reference answer was not accepted ({step.Info.Error})");
                }
            }
        }

        return (Quantiles.NearestRank(us, 0.5), Quantiles.NearestRank(us, 0.99));
    }

    private static async Task<(double TtftP50, double TtftP99, double TokensPerSecond)> MeasureStreamsAsync(
        int streams, int tokens, Func<Wire.GenerateRequest, IAsyncEnumerable<Wire.GenerateEvent>> generate)
    {
        var ttft = new List<double>(streams);
        var rates = new List<double>(streams);
        for (int pass = 0; pass < 2; pass++)
        {
            ttft.Clear();
            rates.Clear();
            for (int i = 0; i < streams; i++)
            {
                var request = new Wire.GenerateRequest
                {
                    PromptTokenIds = { 1, 2, 3, 4, 5, 6, 7, 8 },
                    Sampling = new Wire.SamplingParams { Temperature = 1f, Seed = (ulong)i, MaxTokens = tokens, StopOnRepetition = false },
                };
                long t0 = Stopwatch.GetTimestamp();
                double first = 0;
                int n = 0;
                await foreach (var e in generate(request))
                {
                    if (e.Token is not null && n++ == 0)
                    {
                        first = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    }
                }

                double total = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                if (n != tokens)
                {
                    throw new InvalidOperationException($"stream {i}: {n} tokens, expected {tokens}");
                }

                ttft.Add(first);
                rates.Add(n / total);
            }
        }

        return (Quantiles.NearestRank(ttft, 0.5), Quantiles.NearestRank(ttft, 0.99), Quantiles.NearestRank(rates, 0.5));
    }
}
