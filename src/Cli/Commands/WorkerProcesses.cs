using System.Collections.Concurrent;
using System.Diagnostics;
using K2RL.Common;
using K2RL.Common.Redis;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl rollout-worker</c> child processes of this very binary (for <c>k2rl bench rl --workers N</c>): started on a
/// Redis URL, waited for until registered, stopped with SIGTERM (killed if they linger). Their stderr is kept and shown
/// when one fails.
/// </summary>
internal sealed class WorkerProcesses : IDisposable
{
    private readonly List<Process> processes = [];
    private readonly ConcurrentQueue<string> log = new();

    public static async Task<WorkerProcesses> StartAsync(int count, string url, string weights, CancellationToken ct)
    {
        var set = new WorkerProcesses();
        var (file, prefix) = Self();
        for (int i = 0; i < count; i++)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in prefix.Concat(["rollout-worker", "--redis", url, "--weights", weights, "--id", $"bench-{i + 1}"]))
            {
                psi.ArgumentList.Add(a);
            }

            var p = Process.Start(psi)!;
            p.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    set.log.Enqueue(e.Data);
                }
            };
            p.BeginErrorReadLine();
            p.OutputDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            set.processes.Add(p);
        }

        await using var redis = await RedisConnection.ConnectAsync(url).ConfigureAwait(false);
        var queue = new RedisWorkQueue(redis);
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while ((await queue.WorkersAsync(TimeSpan.FromMinutes(1)).ConfigureAwait(false)).Count < count)
        {
            if (set.processes.Any(p => p.HasExited) || DateTime.UtcNow > deadline)
            {
                set.Dispose();
                throw new K2Exception($"a rollout worker did not start: {string.Join("\n", set.log.TakeLast(20))}");
            }

            await Task.Delay(20, ct).ConfigureAwait(false);
        }

        return set;
    }

    /// <summary>This binary: the k2rl apphost, or dotnet with k2rl.dll.</summary>
    private static (string File, string[] Prefix) Self()
    {
        string path = Environment.ProcessPath ?? throw new K2Exception("cannot tell this process's executable");
        return Path.GetFileNameWithoutExtension(path) == "dotnet" ? (path, [typeof(WorkerProcesses).Assembly.Location]) : (path, []);
    }

    public void Dispose()
    {
        foreach (var p in processes.Where(p => !p.HasExited))
        {
            Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
        }

        foreach (var p in processes)
        {
            if (!p.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                p.Kill();
                p.WaitForExit();
            }

            p.Dispose();
        }
    }
}
