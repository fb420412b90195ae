using System.Diagnostics;
using System.Text.Json.Nodes;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl job</c> against a real running <c>k2rl rl</c> (a child process): status, pause (the iteration count stops),
/// resume, drain (a checkpoint, then paused), the token (missing and wrong: UNAUTHENTICATED), and stop (checkpoint,
/// exit 0) after which --resume reproduces the uninterrupted run's metrics.
/// </summary>
public sealed class JobControlIntegrationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    private const int Iterations = 60;

    [Fact]
    public async Task PauseResumeDrainAndStopWithATokenThenResumeMatchesTheUninterruptedRun()
    {
        // enough iterations that the commands below land before the end on a fast idle machine (8 finished in 1.5 s)
        using var jobs = new RlTestJobs(iterations: Iterations, every: 100);
        string reference = jobs.RunDir("reference"), run = jobs.RunDir("controlled");
        string token = Path.Combine(jobs.Dir, "token"), wrong = Path.Combine(jobs.Dir, "wrong");
        File.WriteAllText(token, "the-right-token\n");
        File.WriteAllText(wrong, "not-the-token\n");
        using var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", run, "--control", "127.0.0.1:0", "--control-token-file", token);
        WaitForControl(p, run);
        Assert.True(JsonNode.Parse(File.ReadAllText(Path.Combine(run, "control.json")))!["token_required"]!.GetValue<bool>());

        var (code, _, err) = await Job("status", run);
        Assert.True(code == 1 && err.Contains("UNAUTHENTICATED") && err.Contains("token was missing"), err);
        (code, _, err) = await Job("pause", run, "--token-file", wrong);
        Assert.True(code == 1 && err.Contains("UNAUTHENTICATED") && err.Contains("token was wrong"), err);
        var status = await JobJson("status", run, "--token-file", token);
        Assert.Equal(("running", p.Id, (long)Iterations), (status["state"]!.GetValue<string>(), status["pid"]!.GetValue<int>(), status["total_iterations"]!.GetValue<long>()));
        Assert.Empty(status["workers"]!.AsArray());
        Assert.Empty(status["queue_depths"]!.AsObject());

        // pause: the iteration in flight finishes, then nothing advances.
        ChildK2rl.WaitForMetrics(p, run, 1);
        status = await JobJson("pause", run, "--token-file", token, "--wait", "300");   // returns once parked
        Assert.True(status["parked"]!.GetValue<bool>() && status["state"]!.GetValue<string>() == "paused", status.ToJsonString());
        long n = status["iteration"]!.GetValue<long>();
        Assert.Equal(n, MetricsLines(run));
        Assert.Equal(n, status["last_metrics"]!["iteration"]!.GetValue<long>());
        Thread.Sleep(1500);
        Assert.Equal(n, (await JobJson("status", run, "--token-file", token))["iteration"]!.GetValue<long>());
        Assert.Equal(n, MetricsLines(run));

        // resume, then drain: a checkpoint of the iterations done, then paused.
        Assert.Equal("running", (await JobJson("resume", run, "--token-file", token))["state"]!.GetValue<string>());
        await WaitFor(run, token, s => s["iteration"]!.GetValue<long>() > n);
        status = await JobJson("drain", run, "--token-file", token, "--wait", "300");   // returns once the checkpoint is written
        Assert.True(status["parked"]!.GetValue<bool>() && status["state"]!.GetValue<string>() == "paused", status.ToJsonString());
        long m = status["iteration"]!.GetValue<long>();
        Assert.True(m < Iterations, $"the job finished before the drain ({m})");
        Assert.Equal($"checkpoints/step-{m}", File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        Assert.EndsWith($"step-{m}", status["last_checkpoint"]!.GetValue<string>());
        Assert.Equal(m, MetricsLines(run));

        // resume and stop at once (most likely mid-iteration: that iteration is abandoned and runs again on resume).
        await JobJson("resume", run, "--token-file", token);
        var stopped = await JobJson("stop", run, "--token-file", token, "--wait", "300");   // returns once the job has exited
        Assert.True(stopped["exited"]!.GetValue<bool>());
        Assert.False(File.Exists(Path.Combine(run, "control.json")));
        string stdout = ChildK2rl.Finish(p);   // exit 0
        var result = JsonNode.Parse(stdout)!;
        Assert.Equal("stopped", result["reason"]!.GetValue<string>());
        long k = result["iteration"]!.GetValue<long>();
        Assert.Equal($"checkpoints/step-{k}", File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        Assert.False(File.Exists(Path.Combine(run, "control.json")));
        string log = File.ReadAllText(Path.Combine(run, "logs", "rl.clef"));
        Assert.Contains("job control: pause", log);
        Assert.DoesNotContain("the-right-token", log);   // never logged
        Assert.DoesNotContain("Request starting", log);  // nor a line per call

        var (rc, _, rerr) = await ModelCommandInfoTests.Run("rl", "--job", jobs.JobPath, "--run-dir", run, "--resume");
        Assert.True(rc == 0, rerr);
        (rc, _, rerr) = await ModelCommandInfoTests.Run("rl", "--job", jobs.JobPath, "--run-dir", reference);
        Assert.True(rc == 0, rerr);
        Assert.Equal(RlTestJobs.Deterministic(reference), RlTestJobs.Deterministic(run));
    }

    [Fact]
    public async Task ANonLoopbackControlAddressWithoutATokenIsRefusedAtOnce()
    {
        using var jobs = new RlTestJobs(iterations: 1);
        string run = jobs.RunDir("refused");
        var (code, _, err) = await ModelCommandInfoTests.Run("rl", "--job", jobs.JobPath, "--run-dir", run, "--control", "0.0.0.0:0");
        Assert.Equal(1, code);
        Assert.Contains("--control 0.0.0.0:0 is not a loopback address: job control there requires a token", err);
        Assert.False(Directory.Exists(run));   // refused before anything was written

        (code, _, err) = await ModelCommandInfoTests.Run("rl", "--job", jobs.JobPath, "--run-dir", run, "--control", "7070");
        Assert.True(code == 1 && err.Contains("--control '7070' is not HOST:PORT"), err);
    }

    [Fact]
    public async Task NoControlFileAndARefusedAddressAreClearErrors()
    {
        using var jobs = new RlTestJobs(iterations: 1);
        var (code, stdout, err) = await Job("status", jobs.Dir, "--json");
        Assert.True(code == 1 && err.Contains($"no control.json in {jobs.Dir}: no RL job is running there"), err);
        Assert.Equal("", stdout);
        (code, _, err) = await Job("drain", jobs.Dir, "--wait", "-1");
        Assert.True(code == 1 && err.Contains("--wait must be in [0, 86400] seconds"), err);
        (code, _, err) = await Job("status", Path.Combine(jobs.Dir, "never"));
        Assert.True(code == 1 && err.Contains("does not exist: the job was never started there"), err);

        using var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        closed.Start();
        int port = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();   // nothing listens there now
        File.WriteAllText(Path.Combine(jobs.Dir, "control.json"), $"{{\"address\": \"http://127.0.0.1:{port}\", \"pid\": 1, \"token_required\": false}}");
        (code, _, err) = await Job("pause", jobs.Dir);
        Assert.True(code == 1 && err.Contains($"job control at http://127.0.0.1:{port}/ is unreachable"), err);
    }

    internal static Task<(int Code, string Out, string Err)> Job(string action, string runDir, params string[] more) =>
        ModelCommandInfoTests.Run(["job", action, "--run-dir", runDir, .. more]);

    internal static async Task<JsonObject> JobJson(string action, string runDir, params string[] more) =>
        await ModelCommandInfoTests.RunJson(["job", action, "--run-dir", runDir, "--json", .. more]);

    /// <summary>Polls (no time assertions) until the child has written control.json.</summary>
    internal static void WaitForControl(Process p, string runDir)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!File.Exists(Path.Combine(runDir, "control.json")))
        {
            if (p.HasExited)
            {
                Assert.Fail($"the job exited ({p.ExitCode}) before serving job control: {p.StandardOutput.ReadToEnd()}");
            }

            Assert.True(DateTime.UtcNow < deadline, "the job did not write control.json");
            Thread.Sleep(20);
        }
    }

    private static async Task<JsonObject> WaitFor(string runDir, string tokenFile, Func<JsonObject, bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var s = await JobJson("status", runDir, "--token-file", tokenFile);
            if (condition(s))
            {
                return s;
            }

            Assert.True(DateTime.UtcNow < deadline, $"the job never reached the awaited status; last: {s.ToJsonString()}");
            await Task.Delay(50);
        }
    }

    private static long MetricsLines(string runDir) => File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Count(l => l.Trim().Length > 0);
}
