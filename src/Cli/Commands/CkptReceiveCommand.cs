using System.CommandLine;
using System.Text.Json;
using K2RL.CheckpointEngine;
using K2RL.Model;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl ckpt receive</c> (hidden): one checkpoint-engine receiver in its own process, from shared memory or the
/// network, as a rollout worker will run it; the integration tests' child process. It runs until a version is reached
/// (<c>--until-version</c>) or its stdin closes, keeps <c>--status-file</c> current after every version, and prints one
/// JSON object: the version held and the checksum (WireCodec's) of its parameter bytes.
/// </summary>
public sealed class CkptReceiveCommand : ICommandProvider
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public string Group => "ckpt";

    public IEnumerable<Command> Build(CliContext context)
    {
        var shm = new Option<string?>("--shm") { Description = "Receive from the shared-memory file /dev/shm/k2rl-weights-NAME" };
        var listen = new Option<string?>("--listen") { Description = "Receive over the network: serve k2rl.v1.Checkpoint on HOST:PORT (port 0: any free one)" };
        var lane = new Option<string>("--data-lane-port")
        {
            Description = "With --listen: the port of the data lane (raw TCP pushes on the same host; 0: any free one; off: gRPC only)",
            DefaultValueFactory = _ => "0",
        };
        var addressFile = new Option<string?>("--address-file") { Description = "Write the listening address here once serving" };
        var statusFile = new Option<string?>("--status-file") { Description = "Rewrite {held_version, checksum} here after every version" };
        var peers = new Option<string[]>("--peer") { Description = "A holder to fetch the current version from at start (repeatable)", AllowMultipleArgumentsPerToken = false };
        var config = new Option<string?>("--config") { Description = "The receiver's model config (its parameter layout)" };
        var tensors = new Option<int>("--tensors") { Description = "Without --config: a synthetic layout of this many tensors", DefaultValueFactory = _ => 8 };
        var tensorSize = new Option<long>("--tensor-size") { Description = "… of this many elements each", DefaultValueFactory = _ => 1024 };
        var until = new Option<long>("--until-version") { Description = "Exit once this version is held (default: when stdin closes)", DefaultValueFactory = _ => -1 };
        var timeout = new Option<double>("--timeout-s") { Description = "Give up after this long", DefaultValueFactory = _ => 120 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("receive", "Run one checkpoint-engine receiver (shared memory or network) until a version or stdin's end")
        {
            shm, listen, lane, addressFile, statusFile, peers, config, tensors, tensorSize, until, timeout, json,
        };
        command.Hidden = true;
        command.SetAction(async (parse, ct) =>
        {
            var model = parse.GetValue(config) is { } path ? new ParameterLayout(ModelConfig.Load(path)).ToTensorSpecs()
                : TensorSpec.Synthetic(parse.GetValue(tensors), parse.GetValue(tensorSize));
            var options = new ReceiveOptions(parse.GetValue(shm), parse.GetValue(listen), parse.GetValue(addressFile), parse.GetValue(statusFile),
                parse.GetValue(peers) ?? [], parse.GetValue(until), TimeSpan.FromSeconds(parse.GetValue(timeout)),
                NetworkReceiverOptions.ParseDataLanePort(parse.GetValue(lane)!));
            var result = await ReceiveAsync(model, options, context, ct);
            context.Out.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(result, Json) : $"held version {result.HeldVersion} ({result.Checksum})");
            return result.Error is null ? 0 : 1;
        });
        yield return command;
    }

    private static async Task<ReceiveResult> ReceiveAsync(IReadOnlyList<TensorSpec> model, ReceiveOptions o, CliContext context, CancellationToken ct)
    {
        if ((o.Shm is null) == (o.Listen is null))
        {
            throw new Common.ConfigException("give --shm NAME or --listen HOST:PORT (one of them)");
        }

        using var stdinClosed = new CancellationTokenSource();
        if (o.UntilVersion < 0)
        {
            _ = Task.Run(() =>
            {
                while (Console.In.Read() >= 0)
                {
                }

                stdinClosed.Cancel();
            }, CancellationToken.None);
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, stdinClosed.Token);
        linked.CancelAfter(o.Timeout);
        if (o.Shm is { } name)
        {
            using var receiver = new SharedMemoryWeightReceiver(name, model);
            receiver.Start(TimeSpan.FromMilliseconds(1));
            var r = await WatchAsync(receiver.Slot, o, linked.Token, stdinClosed.Token);
            return r with { Error = r.Error is null ? null : receiver.LastError is { } why ? $"{r.Error}: {why}" : r.Error, Refetched = receiver.Refetched };
        }

        var (host, port) = Common.Rpc.GrpcServerOptions.ParseListen(o.Listen!);
        await using var net = await NetworkWeightReceiver.StartAsync(model,
            new NetworkReceiverOptions { Host = host, Port = port, Peers = o.Peers.Select(p => new Uri(p)).ToList(), DataLanePort = o.DataLanePort }, ct: ct);
        context.Error.WriteLine($"ckpt receive: serving k2rl.v1.Checkpoint on {net.Address}, data lane port {net.DataLanePort}");
        if (o.AddressFile is { } file)
        {
            K2RL.Model.IO.AtomicFile.WriteAllText(file, net.Address.ToString());
        }

        var result = await WatchAsync(net.Slot, o, linked.Token, stdinClosed.Token);
        return result with { Refetched = net.Node.CorruptBuckets, DataLanePushes = net.Node.DataLanePushes };
    }

    // Polls the receiver's slot: records each new version, ends at the wanted one, at stdin's end or at the timeout.
    private static async Task<ReceiveResult> WatchAsync(WeightSlot slot, ReceiveOptions o, CancellationToken stop, CancellationToken stdinClosed)
    {
        long seen = -1;
        string checksum = "";
        while (true)
        {
            if (slot.TryGetNewer(seen, out var w) && w is not null)
            {
                seen = w.Version;
                checksum = Checksum(w.Parameters);
                slot.Release(w);
                if (o.StatusFile is { } file)
                {
                    K2RL.Model.IO.AtomicFile.WriteAllText(file, JsonSerializer.Serialize(new { held_version = seen, checksum }));
                }
            }

            if (o.UntilVersion >= 0 && seen >= o.UntilVersion)
            {
                return new ReceiveResult(seen, checksum, null, 0);
            }

            if (stop.IsCancellationRequested)
            {
                return new ReceiveResult(seen, checksum, stdinClosed.IsCancellationRequested || o.UntilVersion < 0 ? null : $"version {o.UntilVersion} did not arrive in {o.Timeout.TotalSeconds} s", 0);
            }

            try
            {
                await Task.Delay(2, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>The hex checksum of a parameter buffer's bytes (what the tests compare with the sent buffer's).</summary>
    public static string Checksum(float[] parameters) =>
        WireCodec.Checksum(System.Runtime.InteropServices.MemoryMarshal.AsBytes(parameters.AsSpan())).ToString("x16");

    private sealed record ReceiveOptions(string? Shm, string? Listen, string? AddressFile, string? StatusFile, string[] Peers, long UntilVersion, TimeSpan Timeout,
        int? DataLanePort);

    private sealed record ReceiveResult(long HeldVersion, string Checksum, string? Error, long Refetched)
    {
        /// <summary>Pushes that came in on the data lane (the rest came over gRPC).</summary>
        public long DataLanePushes { get; init; }
    }
}
