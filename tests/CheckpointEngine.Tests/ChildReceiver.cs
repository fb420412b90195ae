using System.Diagnostics;
using System.Text.Json;

namespace K2RL.CheckpointEngine.Tests;

/// <summary>
/// A real receiver process: the built k2rl's <c>ckpt receive</c>, with its address and status files in a temporary
/// directory. It runs until its stdin closes (<see cref="Finish"/>) or the version it was told to wait for.
/// </summary>
internal sealed class ChildReceiver : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);
    private readonly DirectoryInfo dir = Directory.CreateTempSubdirectory("k2rl-ckpt-");

    private ChildReceiver(string[] args)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "k2rl.dll"));
        foreach (string a in new[] { "ckpt", "receive", "--address-file", AddressFile, "--status-file", StatusFile, "--json" }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }

        Process = Process.Start(psi)!;
        Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (StdErr) { StdErr.Add(e.Data); } } };
        Process.BeginErrorReadLine();
    }

    public Process Process { get; }

    public List<string> StdErr { get; } = [];

    private string AddressFile => Path.Combine(dir.FullName, "address");

    private string StatusFile => Path.Combine(dir.FullName, "status.json");

    /// <summary>k2rl ckpt receive ARGS (the synthetic layout: <paramref name="tensors"/> × <paramref name="size"/>).</summary>
    public static ChildReceiver Start(int tensors, long size, params string[] args) =>
        new(["--tensors", tensors.ToString(), "--tensor-size", size.ToString(), .. args]);

    /// <summary>The address a network receiver serves on, once it does.</summary>
    public Uri Address() => new(Poll(() => File.Exists(AddressFile) ? File.ReadAllText(AddressFile) : null, "its address"));

    /// <summary>Waits until the receiver holds <paramref name="version"/> (or newer); returns its parameters' digest.</summary>
    public string WaitForVersion(long version) => Poll(() =>
    {
        var status = Status();
        return status is { } s && s.Version >= version ? s.Digest : null;
    }, $"version {version}");

    /// <summary>The held version and digest the child last wrote; null before its first version.</summary>
    public (long Version, string Digest)? Status()
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(StatusFile));
            return (doc.RootElement.GetProperty("held_version").GetInt64(), doc.RootElement.GetProperty("checksum").GetString()!);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Closes its stdin (or lets it reach its version) and returns its one JSON object and exit code.</summary>
    public (JsonElement Json, int ExitCode) Finish()
    {
        Process.StandardInput.Close();
        string stdout = Process.StandardOutput.ReadToEnd();
        Assert.True(Process.WaitForExit(Patience), "the receiver did not exit");
        Process.WaitForExit();
        try
        {
            return (JsonDocument.Parse(stdout).RootElement.Clone(), Process.ExitCode);
        }
        catch (JsonException)
        {
            throw new Xunit.Sdk.XunitException($"not one JSON object: '{stdout}'; stderr: {string.Join("\n", StdErr)}");
        }
    }

    public void Kill()
    {
        Process.Kill(entireProcessTree: true);
        Process.WaitForExit();
    }

    public void Dispose()
    {
        if (!Process.HasExited)
        {
            Kill();
        }

        Process.Dispose();
        dir.Delete(recursive: true);
    }

    private T Poll<T>(Func<T?> probe, string what)
        where T : class
    {
        var deadline = DateTime.UtcNow + Patience;
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } value)
            {
                return value;
            }

            if (Process.HasExited)
            {
                break;
            }

            Thread.Sleep(10);
        }

        throw new Xunit.Sdk.XunitException($"the receiver exited ({(Process.HasExited ? Process.ExitCode : "running")}) or stalled before {what}; stderr: {string.Join("\n", StdErr)}");
    }
}
