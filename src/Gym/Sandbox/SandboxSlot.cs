using System.Globalization;

namespace K2RL.Gym.Sandbox;

/// <summary>
/// This process's share of the host's sandbox resources: slot n of <see cref="Count"/>, held by an exclusive lock
/// on <c>ROOT/n.lock</c> for the life of the process (the kernel drops it when the process dies, <c>kill -9</c>
/// included). The slot owns
/// <list type="bullet">
/// <item>the uids <c>200000 + 1000·n</c> .. <c>+999</c>, so two K2RL processes on one host (RL workers, <c>gym serve</c>,
/// eval) never run programs under the same uid, and one's fork bomb cannot use up another's RLIMIT_NPROC;</item>
/// <item>the folder <c>ROOT/n/</c>, where the programs are written. A folder whose lock nobody holds belongs to a dead
/// process: it is emptied when a process takes that slot, and every such folder is emptied when a process takes
/// its own, so nothing a killed process left behind outlives the next start.</item>
/// </list>
/// ROOT is <c>/tmp/k2rl-sandbox</c> for root (uids are host-wide, so every process must see the same locks whatever
/// its TMPDIR) and <c>$TMPDIR/k2rl-sandbox-USER</c> otherwise (no uids are allocated then: a user namespace maps the
/// program to the caller's uid). The lock is .NET's <see cref="FileShare.None"/>, an <c>flock</c> on Unix.
/// </summary>
internal sealed class SandboxSlot
{
    public const int Count = 100;
    public const int FirstUid = 200_000;
    public const int UidsPerSlot = 1_000;

    /// <summary>The lock; never disposed: the slot is a process-wide singleton, so it is held until the process ends.</summary>
    private readonly FileStream held;
    private int nextUid;

    private SandboxSlot(int index, FileStream held, string dir)
    {
        Index = index;
        this.held = held;
        Dir = dir;
    }

    public static bool AsRoot => Environment.UserName == "root";

    public static string Root => AsRoot
        ? "/tmp/k2rl-sandbox"
        : Path.Combine(Path.GetTempPath(), "k2rl-sandbox-" + Environment.UserName);

    public int Index { get; }

    /// <summary>Where this process writes its programs (one sub-folder per run).</summary>
    public string Dir { get; }

    /// <summary>This slot's uids: [<see cref="UidStart"/>, <see cref="UidStart"/> + <see cref="UidsPerSlot"/>).</summary>
    public int UidStart => FirstUid + UidsPerSlot * Index;

    /// <summary>The next uid of this slot's range, round-robin.</summary>
    public int NextUid() => UidStart + (int)((uint)Interlocked.Increment(ref nextUid) % UidsPerSlot);

    /// <summary>Takes the lowest free slot, empties its folder, then empties every other slot folder nobody holds.</summary>
    public static SandboxSlot Acquire()
    {
        string root = Root;
        Directory.CreateDirectory(root);
        for (int n = 0; n < Count; n++)
        {
            if (TryLock(root, n) is not { } held)
            {
                continue;
            }

            string dir = Path.Combine(root, n.ToString(CultureInfo.InvariantCulture));
            EmptyFolder(dir);
            Directory.CreateDirectory(dir);
            var slot = new SandboxSlot(n, held, dir);
            CleanAbandoned(root, n);
            return slot;
        }

        throw new IOException($"all {Count} sandbox slots in {root} are held by running processes");
    }

    /// <summary>Empties the folder of every slot but <paramref name="own"/> whose lock is free (its process is gone).</summary>
    private static void CleanAbandoned(string root, int own)
    {
        foreach (string dir in Directory.EnumerateDirectories(root))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int n) ||
                n == own || n >= Count || !Directory.EnumerateFileSystemEntries(dir).Any())
            {
                continue;
            }

            using var held = TryLock(root, n);
            if (held is not null)
            {
                EmptyFolder(dir);
            }
        }
    }

    private static FileStream? TryLock(string root, int n)
    {
        try
        {
            return new FileStream(Path.Combine(root, n.ToString(CultureInfo.InvariantCulture) + ".lock"),
                FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Deletes what is in <paramref name="dir"/>, best effort (a file another user owns stays).</summary>
    private static void EmptyFolder(string dir)
    {
        if (!Directory.Exists(dir))
        {
            return;
        }

        foreach (string entry in Directory.EnumerateFileSystemEntries(dir))
        {
            try
            {
                if (Directory.Exists(entry))
                {
                    Directory.Delete(entry, recursive: true);
                }
                else
                {
                    File.Delete(entry);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }
}
