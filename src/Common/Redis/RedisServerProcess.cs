using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace K2RL.Common.Redis;

/// <summary>
/// A redis-server child process for benchmarks and tests: on a free loopback port, in its own directory, the
/// append-only file on (fsync <c>always</c> by default, so even a crash keeps every acknowledged write; <c>everysec</c>
/// is what deploy/ runs: a crash may lose the last second, which the queue's gone path redoes). <see cref="Stop"/> sends SIGTERM
/// (the server writes its AOF and exits); <see cref="Start"/> starts it again on the same port and directory.
/// </summary>
public sealed class RedisServerProcess : IDisposable
{
    private readonly string binary;
    private readonly string appendFsync;
    private readonly string? password;
    private Process? process;

    /// <param name="binary">the redis-server executable (Debian's package redis-server).</param>
    /// <param name="dir">its working directory (AOF and log); a fresh temporary one by default.</param>
    /// <param name="appendFsync">the AOF's fsync policy: <c>always</c>, <c>everysec</c> or <c>no</c>.</param>
    /// <param name="password">the server's <c>requirepass</c>, or null for none.</param>
    public RedisServerProcess(string binary, string? dir = null, string appendFsync = "always", string? password = null)
    {
        if (appendFsync is not ("always" or "everysec" or "no"))
        {
            throw new ArgumentException($"appendfsync must be always, everysec or no, not '{appendFsync}'", nameof(appendFsync));
        }

        this.binary = binary;
        this.appendFsync = appendFsync;
        this.password = password;
        Dir = dir ?? Path.Combine(Path.GetTempPath(), "k2rl-redis-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Dir);
        Port = FreePort();
        Start();
    }

    public string Dir { get; }

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    /// <summary>redis-server on PATH, or a <see cref="K2Exception"/> saying to install it.</summary>
    public static string FindBinary() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists)
        ?? throw new K2Exception("redis-server is not on PATH: install Debian's package redis-server (apt-get install redis-server)");

    public void Start()
    {
        var psi = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Dir };
        foreach (string a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--dir", Dir, "--appendonly", "yes", "--appendfsync", appendFsync,
                     "--save", "", "--daemonize", "no", "--logfile", Path.Combine(Dir, "redis.log") })
        {
            psi.ArgumentList.Add(a);
        }

        if (password is not null)
        {
            psi.ArgumentList.Add("--requirepass");
            psi.ArgumentList.Add(password);
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
                string logFile = Path.Combine(Dir, "redis.log");
                throw new K2Exception($"redis-server on port {Port} did not start: {(File.Exists(logFile) ? File.ReadAllText(logFile) : "")}");
            }

            Thread.Sleep(20);
        }
    }

    /// <summary>SIGTERM (redis-server writes its AOF and exits), then waits for the exit.</summary>
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
            client.ReceiveTimeout = 2000;
            var stream = client.GetStream();
            string expected = "+PONG\r\n";
            if (password is not null)
            {
                int bytes = Encoding.UTF8.GetByteCount(password);
                stream.Write(Encoding.UTF8.GetBytes($"*2\r\n$4\r\nAUTH\r\n${bytes}\r\n{password}\r\n"));
                expected = "+OK\r\n" + expected;
            }

            stream.Write("*1\r\n$4\r\nPING\r\n"u8);
            var buffer = new byte[256];
            int n = 0;
            while (n < expected.Length && stream.Read(buffer, n, buffer.Length - n) is > 0 and var read)
            {
                n += read;
                if (buffer[0] == (byte)'-')
                {
                    break;   // an error (LOADING: not up yet)
                }
            }

            return Encoding.ASCII.GetString(buffer, 0, n) == expected;
        }
        catch (Exception e) when (e is SocketException or IOException)
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
