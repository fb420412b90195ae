using System.Diagnostics;
using K2RL.Tests.Shared;
using YamlDotNet.RepresentationModel;

namespace K2RL.Deploy.Tests;

/// <summary>
/// deploy/local.sh: shellcheck-clean, its argument checks, and the job file it runs (printed by --print-job) is the
/// Kubernetes job with the local base, Redis and weight transport. Running the topology itself needs `k2rl
/// rollout-worker` and `k2rl job`; this does not start any process but bash.
/// </summary>
public class LocalScriptTests
{
    private static readonly string Root = ExternalTools.RepoRoot();
    private const string Script = "deploy/local.sh";

    [Fact]
    public void ShellcheckFindsNothing()
    {
        ExternalTools.Require("shellcheck", "shellcheck");
        ExternalTools.Run("shellcheck", Script, TimeSpan.FromMinutes(1), Root);
    }

    [Fact]
    public void ThePrintedJobIsTheKubernetesJobWithLocalSettings()
    {
        using var dir = new TempFolder();
        string baseDir = Path.Combine(dir.Path, "nano");
        foreach (var (weights, shm) in new[] { ("shm", true), ("net", false) })
        {
            var (code, stdout, stderr) = Bash("--print-job", "--run-root", Path.Combine(dir.Path, "run"), "--base", baseDir, "--redis-port", "6391", "--weights", weights);
            Assert.True(code == 0, stderr);
            var job = JobFileTests.Load(stdout);
            Assert.Equal(baseDir, JobFileTests.Scalar(job, "init_from"));
            var rollout = (YamlMappingNode)job.Children[new YamlScalarNode("rollout")];
            Assert.Equal("redis://127.0.0.1:6391", JobFileTests.Scalar(rollout, "workers"));
            Assert.Equal(weights, JobFileTests.Scalar(rollout, "transport"));
            Assert.Equal("f32", JobFileTests.Scalar(rollout, "weights"));
            Assert.Equal(shm, rollout.Children.ContainsKey(new YamlScalarNode("shm_name")));
            Assert.Equal(JobFileTests.Canonical(JobFileTests.WithoutScaleOut(JobFileTests.Load(JobFileTests.JobText))),
                JobFileTests.Canonical(JobFileTests.WithoutScaleOut(job)));
        }
    }

    [Fact]
    public void ThePrintedJobPassesTheRlJobParser()
    {
        // Like the ConfigMap's job: fails until the redis branch's rollout.workers and rollout.transport are merged.
        using var dir = new TempFolder();
        var (code, stdout, stderr) = Bash("--print-job", "--run-root", dir.Path);
        Assert.True(code == 0, stderr);
        var job = JobFileTests.Parse(stdout, "deploy/local.sh --print-job");
        Assert.Equal(250, job.Iterations);
    }

    [Theory]
    [InlineData("--workers 0", "--workers must be a positive integer")]
    [InlineData("--weights rdma", "--weights must be shm or net")]
    [InlineData("--redis-port 70000", "--redis-port must be a port number")]
    [InlineData("--redis-port", "--redis-port needs a value")]
    [InlineData("--max-iterations -3", "--max-iterations must be a positive integer")]
    [InlineData("--job /nonexistent/rl.yaml", "no job file /nonexistent/rl.yaml")]
    [InlineData("--frobnicate", "unknown argument --frobnicate")]
    public void BadArgumentsAreRefusedByName(string args, string message)
    {
        using var dir = new TempFolder();
        var (code, stdout, stderr) = Bash([.. args.Split(' '), "--run-root", dir.Path, "--print-job"]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void AJobFileWhoseWorkersAreNotTheLocalRedisIsRefused()
    {
        using var dir = new TempFolder();
        string job = Path.Combine(dir.Path, "rl.yaml");
        File.WriteAllText(job, JobFileTests.JobText);   // names redis://redis:6379, the cluster's
        var (code, _, stderr) = Bash("--job", job, "--run-root", dir.Path, "--print-job");
        Assert.Equal(1, code);
        Assert.Contains("rollout.workers must be redis://127.0.0.1:6390", stderr);
    }

    private static (int Code, string Stdout, string Stderr) Bash(params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root };
        psi.ArgumentList.Add(Path.Combine(Root, Script));
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), $"{Script} did not finish in 30 s");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
