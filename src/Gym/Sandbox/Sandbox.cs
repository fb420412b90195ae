namespace K2RL.Gym.Sandbox;

/// <summary>Bounds on one sandboxed run. Every run gets all of them; nothing is unlimited.</summary>
public sealed record SandboxLimits
{
    /// <summary>Wall-clock time until the whole sandbox (every process in it) is killed.</summary>
    public TimeSpan WallTime { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>CPU seconds per process (RLIMIT_CPU; SIGXCPU, then SIGKILL one second later).</summary>
    public int CpuSeconds { get; init; } = 2;

    /// <summary>Address space per process (RLIMIT_AS).</summary>
    public long MemoryBytes { get; init; } = 512L << 20;

    /// <summary>Processes the sandbox's own uid may have at once (RLIMIT_NPROC; each run gets a fresh uid).</summary>
    public int MaxProcesses { get; init; } = 16;

    /// <summary>Bytes of stdout and of stderr kept; a program that writes more is killed.</summary>
    public int MaxOutputBytes { get; init; } = 1 << 20;

    /// <summary>
    /// Open files per process (RLIMIT_NOFILE). It bounds the kernel memory a program can hold in socket and pipe
    /// buffers, which no address-space limit counts.
    /// </summary>
    public int MaxOpenFiles { get; init; } = 64;

    /// <summary>Size of the private writable work directory (a tmpfs) and the largest file (RLIMIT_FSIZE).</summary>
    public long WorkDirBytes { get; init; } = 32L << 20;
}

/// <summary>A program to run: source text for a named interpreter, its stdin, and limits.</summary>
public sealed record SandboxRequest(string Interpreter, string Program, string Stdin = "")
{
    public SandboxLimits Limits { get; init; } = new();
}

/// <summary>How a sandboxed run ended. Persisted by number: never renumber.</summary>
public enum SandboxStatus
{
    /// <summary>Exited with status 0.</summary>
    Ok = 0,

    /// <summary>Exited with a non-zero status (an exception, a failed write, a refused fork...).</summary>
    NonZeroExit = 1,

    /// <summary>Killed at the wall-time limit.</summary>
    TimedOut = 2,

    /// <summary>Killed by a signal (CPU limit, memory).</summary>
    Signaled = 3,

    /// <summary>Killed for writing more than the output limit.</summary>
    OutputLimit = 4,

    /// <summary>The sandbox could not run the program (bubblewrap missing, unknown interpreter). Not the program's fault.</summary>
    SandboxError = 5,
}

public sealed record SandboxResult(SandboxStatus Status, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public bool Succeeded => Status == SandboxStatus.Ok;
}

/// <summary>Runs untrusted programs. Implementations never throw for anything the program does.</summary>
public interface ISandbox
{
    /// <summary>The interpreters this sandbox can run (e.g. <c>python3</c>).</summary>
    IReadOnlyCollection<string> Interpreters { get; }

    ValueTask<SandboxResult> RunAsync(SandboxRequest request, CancellationToken ct = default);
}
