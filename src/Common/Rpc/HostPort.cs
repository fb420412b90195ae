using System.Net;

namespace K2RL.Common.Rpc;

/// <summary>A HOST:PORT bind address as given on the command line (--control, --metrics, --listen); port 0: any free one.</summary>
public sealed record HostPort(string Host, int Port)
{
    /// <summary>Parses <paramref name="text"/>; a bad one is a <see cref="ConfigException"/> naming <paramref name="option"/>.</summary>
    public static HostPort Parse(string text, string option)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), out int port) || port is < 0 or > 65535)
        {
            throw new ConfigException($"{option} '{text}' is not HOST:PORT (e.g. 127.0.0.1:7070; port 0 for any free one)");
        }

        string host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }

        return new HostPort(host, port);
    }

    /// <summary>True when only this machine can reach the address: "localhost", 127.0.0.0/8 or ::1.</summary>
    public bool IsLoopback => Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(Host, out var ip) && IPAddress.IsLoopback(ip));

    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}
