using System.Diagnostics;

namespace K2RL.Tests.Shared;

/// <summary>
/// Real external components the tests use (node + npm for gRPC interop, bubblewrap for the sandbox, a font for the plots).
/// A fresh machine may lack them: as root with apt-get available we install them once, as .ci/run does;
/// otherwise the test fails with a message that says what to install. Never a silent skip.
/// </summary>
public static class ExternalTools
{
    private static readonly object Gate = new();
    private static bool aptUpdated;

    /// <summary>Ensures <paramref name="command"/> is on PATH, installing the Debian packages if it is not.</summary>
    public static string Require(string command, params string[] debianPackages)
    {
        lock (Gate)
        {
            string? path = Which(command);
            if (path is not null)
            {
                return path;
            }

            if (AptInstall(debianPackages))
            {
                path = Which(command);
            }

            return path ?? throw new InvalidOperationException(
                $"'{command}' is required by this test; install the Debian packages: {string.Join(' ', debianPackages)} (.ci/run does)");
        }
    }

    /// <summary>
    /// Ensures a font under /usr/share/fonts (k2rl plot's SkiaSharp reads fonts from there only, and without one the
    /// figures have no text), installing fonts-dejavu-core if there is none. Call it before anything in the process
    /// draws: SkiaSharp reads the fonts once.
    /// </summary>
    public static void RequireFonts()
    {
        static bool Any() => Directory.Exists("/usr/share/fonts") && Directory.EnumerateFiles("/usr/share/fonts", "*", SearchOption.AllDirectories)
            .Any(f => f.EndsWith(".ttf", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".otf", StringComparison.OrdinalIgnoreCase));
        lock (Gate)
        {
            if (!Any() && !(AptInstall(["fonts-dejavu-core"]) && Any()))
            {
                throw new InvalidOperationException("a font under /usr/share/fonts is required by this test; install the Debian package fonts-dejavu-core (.ci/run does)");
            }
        }
    }

    /// <summary>As root with apt-get: installs the packages (apt-get update first, once) and returns true; else false.</summary>
    private static bool AptInstall(string[] debianPackages)
    {
        if (Environment.UserName != "root" || Which("apt-get") is null)
        {
            return false;
        }

        if (!aptUpdated)
        {
            Run("apt-get", "update -q", TimeSpan.FromMinutes(5));
            aptUpdated = true;
        }

        Run("apt-get", "install -y -q --no-install-recommends " + string.Join(' ', debianPackages), TimeSpan.FromMinutes(10));
        return true;
    }

    /// <summary>
    /// tests/interop with its npm packages (@grpc/grpc-js, @grpc/proto-loader) installed from the committed lock.
    /// Test assemblies run in parallel processes, so the install takes an exclusive lock file: only one process
    /// runs `npm ci`, the others wait and then find the packages in place.
    /// </summary>
    public static string InteropDirectory()
    {
        string dir = Path.Combine(RepoRoot(), "tests", "interop");
        string marker = Path.Combine(dir, "node_modules", "@grpc", "grpc-js", "package.json");
        if (File.Exists(marker))
        {
            return dir;
        }

        Require("node", "nodejs");
        Require("npm", "npm");
        using var gate = AcquireLock(Path.Combine(dir, ".npm-install.lock"), TimeSpan.FromMinutes(6));
        if (!File.Exists(marker))
        {
            Run("npm", "ci --no-audit --no-fund", TimeSpan.FromMinutes(5), dir);
        }

        return dir;
    }

    private static FileStream AcquireLock(string path, TimeSpan patience)
    {
        var deadline = DateTime.UtcNow + patience;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
        }
    }

    public static string? Which(string command)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            if (dir.Length == 0)
            {
                continue;
            }

            string candidate = Path.Combine(dir, command);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Runs a process to completion; throws with its output if it fails or times out.</summary>
    public static string Run(string fileName, string arguments, TimeSpan timeout, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(fileName, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        psi.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {fileName}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {arguments} did not finish within {timeout}");
        }

        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{fileName} {arguments} exited {p.ExitCode}\n{stdout.Result}\n{stderr.Result}");
        }

        return stdout.Result;
    }

    /// <summary>The repository root (the folder holding K2RL.sln), found upward from the test assembly.</summary>
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "K2RL.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("K2RL.sln not found above " + AppContext.BaseDirectory);
    }
}
