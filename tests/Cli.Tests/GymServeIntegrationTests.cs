using System.Diagnostics;
using System.Text.Json;
using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Gym.Tasks;

namespace K2RL.Cli.Tests;

/// <summary>
/// An episode interrupted in this process resumes in another: `k2rl gym serve` runs as a child process, and the
/// snapshot taken here is restored there through the remote-environment protocol.
/// </summary>
public sealed class GymServeIntegrationTests
{
    [Fact]
    public async Task AnEpisodeSnapshottedHereResumesInAnotherProcess()
    {
        await using var local = (ToolTaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("tool_use");
        await local.ResetAsync(12, new ResetOptions { Difficulty = 2 });
        string key = ToolUseGenerator.Table(local.Task!).Keys.First();
        await local.StepAsync(ChatFormat.FormatToolCall("lookup", 0, new Dictionary<string, string> { ["key"] = key }));
        await local.StepAsync(ChatFormat.FormatToolCall("web", 1, new Dictionary<string, string> { ["q"] = "x" }));
        byte[] snapshot = await local.SnapshotAsync();

        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "k2rl.dll"), "gym", "serve", "--json" })
        {
            psi.ArgumentList.Add(a);
        }

        using var child = Process.Start(psi)!;
        try
        {
            var line = child.StandardOutput.ReadLineAsync();
            Assert.True(await Task.WhenAny(line, Task.Delay(TimeSpan.FromSeconds(60))) == line, "k2rl gym serve printed no address");
            using var doc = JsonDocument.Parse(await line ?? "{}");
            var address = new Uri(doc.RootElement.GetProperty("address").GetString()!);

            await using var remote = new RemoteEnvironment(address, "tool_use");
            await remote.RestoreAsync(snapshot);
            var final = await remote.StepAsync($"Answer: {local.Task!.Answer}");
            Assert.True(final.Terminated);
            Assert.True(final.Info.Correct);
            Assert.Equal("2", final.Info.Data["tool_calls"]);
            Assert.NotEqual(Environment.ProcessId, child.Id);
        }
        finally
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
        }
    }
}
