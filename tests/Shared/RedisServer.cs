using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace K2RL.Tests.Shared;

/// <summary>
/// A real redis-server for a test: Debian's binary (installed as .ci/run does when missing, else the test fails saying
/// to install it), on a free loopback port, in its own temp directory with the append-only file on (fsync always, so a
/// restart keeps every acknowledged write). <see cref="Restart"/> stops it (SIGTERM: it writes its AOF) and starts it
/// again on the same port and directory.
/// </summary>
public sealed class RedisServer : IDisposable
{
    private readonly string binary;
    private Process? process;

    public RedisServer()
    {
        binary = ExternalTools.Require("redis-server", "redis-server");
        Dir = Path.Combine(Path.GetTempPath(), "k2rl-redis-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Dir);
        Port = FreePort();
        Start();
    }

    public string Dir { get; }

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    public void Start()
    {
        var psi = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Dir,
        };
        foreach (string a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--dir", Dir, "--appendonly", "yes", "--appendfsync", "always",
                     "--save", "", "--daemonize", "no", "--logfile", Path.Combine(Dir, "redis.log") })
        {
            psi.ArgumentList.Add(a);
        }

        process = Process.Start(psi)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!Ping())
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                string logText = File.Exists(Path.Combine(Dir, "redis.log")) ? File.ReadAllText(Path.Combine(Dir, "redis.log")) : "";
                throw new InvalidOperationException($"redis-server on port {Port} did not start: {logText}");
            }

            Thread.Sleep(20);
        }
    }

    /// <summary>SIGTERM (redis-server flushes its AOF and exits), then waits for the exit.</summary>
    public void Stop()
    {
        if (process is { HasExited: false } p)
        {
            Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
            if (!p.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                p.Kill();
                p.WaitForExit();
            }
        }
    }

    public void Restart()
    {
        Stop();
        Start();
    }

    /// <summary>True when the server answers PING with PONG (not LOADING).</summary>
    private bool Ping()
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, Port);
            var stream = client.GetStream();
            stream.Write("PING\r\n"u8);
            var buffer = new byte[64];
            int n = stream.Read(buffer);
            return Encoding.ASCII.GetString(buffer, 0, n).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public void Dispose()
    {
        if (process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit();
        }

        process?.Dispose();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
