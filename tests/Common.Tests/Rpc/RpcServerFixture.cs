using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>K2RL's gRPC host with the test service on a free loopback port, a Grpc.Net.Client client, and a raw HTTP/2 client.</summary>
public sealed class RpcServerFixture : IAsyncLifetime
{
    /// <summary>Both sides accept at most this much per message.</summary>
    public const int Limit = 64 * 1024;

    public TestServiceImpl Service { get; } = new();

    public GrpcServer Server { get; private set; } = null!;

    public GrpcChannel Channel { get; private set; } = null!;

    public TestService.TestServiceClient Client { get; private set; } = null!;

    public HttpClient Raw { get; } = new(new SocketsHttpHandler()) { Timeout = TimeSpan.FromSeconds(30) };

    public async Task InitializeAsync()
    {
        Server = await GrpcServer.Create(new GrpcServerOptions { MaxReceiveMessageSize = Limit }).AddService(Service).StartAsync();
        Channel = GrpcChannels.Create(Server.Address, new GrpcClientOptions { MaxReceiveMessageSize = Limit });
        Client = new TestService.TestServiceClient(Channel);
        await AssertServesAsync(); // a warm connection and JIT, so that deadline tests measure the call, not start-up
    }

    public async Task DisposeAsync()
    {
        Channel.Dispose();
        Raw.Dispose();
        await Server.DisposeAsync();
    }

    /// <summary>A normal call succeeds: the server survived whatever came before.</summary>
    public async Task AssertServesAsync()
    {
        var reply = await Client.EchoAsync(new EchoRequest { Text = "still serving" }, deadline: DateTime.UtcNow.AddSeconds(10));
        Assert.Equal("still serving", reply.Text);
    }

    /// <summary>One frame as the wire has it: flag, big-endian length, bytes.</summary>
    public static byte[] Frame(byte[] payload, byte flag = 0, int? declaredLength = null)
    {
        var frame = new byte[5 + payload.Length];
        frame[0] = flag;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)(declaredLength ?? payload.Length));
        payload.CopyTo(frame, 5);
        return frame;
    }

    public static byte[] Frame(IMessage message) => Frame(message.ToByteArray());

    /// <summary>Sends a crafted body over HTTP/2 (prior knowledge) and returns what came back, status from headers or trailers.</summary>
    public async Task<RawResponse> RawCallAsync(
        string path, byte[] body, string contentType = "application/grpc", IEnumerable<(string Name, string Value)>? headers = null)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(Server.Address, path))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        request.Headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        foreach (var (name, value) in headers ?? [])
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await Raw.SendAsync(request);
        byte[] responseBody = await response.Content.ReadAsByteArrayAsync();
        string? Header(string name) =>
            response.Headers.TryGetValues(name, out var v) ? v.First()
            : response.TrailingHeaders.TryGetValues(name, out var t) ? t.First()
            : null;
        string? status = Header("grpc-status");
        return new RawResponse(
            response.StatusCode, status is null ? null : (StatusCode)int.Parse(status), Header("grpc-message"),
            responseBody, response.Content.Headers.ContentType?.MediaType, response.Headers.Contains("grpc-status"));
    }
}

public sealed record RawResponse(
    HttpStatusCode HttpStatus, StatusCode? Status, string? Message, byte[] Body, string? ContentType, bool TrailersOnly);
