using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;
using K2RL.Tests.Shared;

namespace K2RL.Common.Tests.Rpc;

/// <summary>
/// @grpc/grpc-js, an independent gRPC implementation, on both sides of K2RL's gRPC setup: a JS server
/// (tests/interop/server.js) for K2RL's client (Grpc.Net.Client), and K2RL's server (Grpc.AspNetCore) with the test
/// service for the JS client.
/// Installs node and the npm packages (npm ci, from the committed lock) when missing.
/// </summary>
public sealed class InteropFixture : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, TaskCompletionSource> lines = new();
    private readonly ConcurrentQueue<string> output = new();
    private Process? jsServer;
    private Lazy<JsonElement>? jsClientReport;

    public static string InteropDir => Path.Combine(ExternalTools.RepoRoot(), "tests", "interop");

    public static string ProtoPath => Path.Combine(ExternalTools.RepoRoot(), "tests", "Common.Tests", "Rpc", "test_service.proto");

    public TestServiceImpl Service { get; } = new();

    public GrpcServer Server { get; private set; } = null!;

    /// <summary>K2RL's channel to the JS server, and the test service's client over it.</summary>
    public GrpcChannel JsServerChannel { get; private set; } = null!;

    public TestService.TestServiceClient JsServerClient { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        string node = ExternalTools.Require("node", "nodejs");
        ExternalTools.InteropDirectory();

        Server = await GrpcServer.Create(new GrpcServerOptions { MaxReceiveMessageSize = RpcServerFixture.Limit }).AddService(Service).StartAsync();
        jsClientReport = new Lazy<JsonElement>(() =>
        {
            string stdout = ExternalTools.Run(node, $"client.js \"{ProtoPath}\" 127.0.0.1:{Server.Port}", Patience, InteropDir);
            using var doc = JsonDocument.Parse(stdout.Trim());
            return doc.RootElement.Clone();
        });
        int port = await StartJsServerAsync(node);
        JsServerChannel = GrpcChannels.Create(new Uri($"http://127.0.0.1:{port}/"), new GrpcClientOptions { MaxReceiveMessageSize = RpcServerFixture.Limit });
        JsServerClient = new TestService.TestServiceClient(JsServerChannel);
    }

    public async Task DisposeAsync()
    {
        JsServerChannel?.Dispose();
        if (jsServer is { HasExited: false })
        {
            jsServer.Kill(entireProcessTree: true);
            await jsServer.WaitForExitAsync();
        }

        jsServer?.Dispose();
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
    }

    /// <summary>Completes when the JS server has printed <paramref name="line"/> ("started TAG", "cancelled TAG").</summary>
    public Task JsServerSaid(string line) => Line(line).Task.WaitAsync(Patience);

    /// <summary>
    /// What client.js saw in one scenario against K2RL's server. The first call runs every scenario at once
    /// in one node process (one start-up instead of one per test); later calls read the same report.
    /// </summary>
    public JsonElement JsClient(string scenario) => jsClientReport!.Value.GetProperty(scenario);

    private async Task<int> StartJsServerAsync(string node)
    {
        var psi = new ProcessStartInfo(node)
        {
            WorkingDirectory = InteropDir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("server.js");
        psi.ArgumentList.Add(ProtoPath);
        jsServer = Process.Start(psi) ?? throw new InvalidOperationException("could not start node server.js");
        jsServer.OutputDataReceived += (_, e) => Record(e.Data);
        jsServer.ErrorDataReceived += (_, e) => Record(e.Data is null ? null : "stderr: " + e.Data);
        jsServer.BeginOutputReadLine();
        jsServer.BeginErrorReadLine();

        var listening = Line("listening");
        var exited = jsServer.WaitForExitAsync();
        if (await Task.WhenAny(listening.Task, exited, Task.Delay(Patience)) != listening.Task)
        {
            throw new InvalidOperationException("server.js did not report its port:\n" + string.Join('\n', output));
        }

        return int.Parse(output.First(l => l.StartsWith("listening ", StringComparison.Ordinal))["listening ".Length..]);
    }

    private void Record(string? line)
    {
        if (line is null)
        {
            return;
        }

        output.Enqueue(line);
        Line(line.StartsWith("listening ", StringComparison.Ordinal) ? "listening" : line).TrySetResult();
    }

    private TaskCompletionSource Line(string line) =>
        lines.GetOrAdd(line, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
