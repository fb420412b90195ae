using System.Security.Cryptography;
using System.Text;
using Grpc.Core;

namespace K2RL.Common.Rpc;

/// <summary>
/// A shared secret for a control service, sent by clients as gRPC metadata <c>authorization: Bearer TOKEN</c>. Read from
/// a file (first line, trimmed) or the environment variable <see cref="EnvironmentVariable"/>; compared in constant time.
/// The token's text is never logged nor put in an error message.
/// </summary>
public sealed class BearerToken
{
    /// <summary>The environment variable both the job and <c>k2rl job</c> read when no token file is given.</summary>
    public const string EnvironmentVariable = "K2RL_CONTROL_TOKEN";

    private readonly byte[] hash;

    private BearerToken(string value)
    {
        Value = value;
        hash = SHA256.HashData(Encoding.UTF8.GetBytes(value));
    }

    /// <summary>The secret itself: for a client's metadata only.</summary>
    public string Value { get; }

    /// <summary>The token from <paramref name="file"/> when given, else from the environment; null when neither has one.</summary>
    public static BearerToken? Load(string? file, string fileOption)
    {
        if (file is not null)
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException($"{fileOption} {file}: cannot read the token: {e.Message}");
            }

            string token = text.Split('\n')[0].Trim();
            return token.Length > 0 ? new BearerToken(token) : throw new ConfigException($"{fileOption} {file}: the file holds no token (its first line is empty)");
        }

        string? env = Environment.GetEnvironmentVariable(EnvironmentVariable)?.Trim();
        return string.IsNullOrEmpty(env) ? null : new BearerToken(env);
    }

    /// <summary>The metadata a client sends with each call.</summary>
    public Metadata Headers() => new() { { "authorization", "Bearer " + Value } };

    /// <summary>
    /// Whether a call's metadata carries this token. The presented value and the secret are hashed first, so the
    /// constant-time comparison also hides the secret's length.
    /// </summary>
    public bool Accepts(Metadata requestHeaders)
    {
        string? header = requestHeaders.GetValue("authorization");
        const string scheme = "Bearer ";
        if (header is null || !header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        byte[] presented = SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(presented, hash);
    }

    /// <summary>Throws UNAUTHENTICATED unless the call carries the token; a null token (loopback, none configured) accepts every call.</summary>
    public static void Check(BearerToken? token, ServerCallContext context)
    {
        if (token is not null && !token.Accepts(context.RequestHeaders))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "missing or wrong token: send metadata 'authorization: Bearer TOKEN' (k2rl job --token-file PATH or K2RL_CONTROL_TOKEN)"));
        }
    }
}
