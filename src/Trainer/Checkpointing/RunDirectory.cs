using System.Globalization;
using K2RL.Common;
using K2RL.Model.IO;
using Serilog;

namespace K2RL.Trainer.Checkpointing;

/// <summary>
/// The run-directory contract (DESIGN.md): checkpoints/step-N/ written in a temporary folder, fsynced, renamed;
/// a MANIFEST with the SHA-256 of every file; LATEST, written last by atomic rename, the only pointer a resume
/// trusts. A checkpoint whose checksums do not match is refused and the next older good one is used.
/// </summary>
public sealed class RunDirectory
{
    public const string ManifestName = Checksums.ManifestName;
    public const string LatestName = CheckpointPath.LatestName;

    private readonly ILogger log;

    public RunDirectory(string root, ILogger? log = null)
    {
        Root = Path.GetFullPath(root);
        this.log = log ?? Serilog.Core.Logger.None;
    }

    public string Root { get; }

    public string Checkpoints => Path.Combine(Root, "checkpoints");

    public string Metrics => Path.Combine(Root, "metrics.jsonl");

    public string Logs => Path.Combine(Root, "logs");

    public string LatestPath => Path.Combine(Root, LatestName);

    public static string StepName(long step) => "step-" + step.ToString(CultureInfo.InvariantCulture);

    public void Create()
    {
        Directory.CreateDirectory(Checkpoints);
        Directory.CreateDirectory(Logs);
    }

    /// <summary>
    /// Writes checkpoint <paramref name="step"/>: <paramref name="writeFiles"/> fills a temporary folder, MANIFEST is
    /// added, every file is fsynced and the folder renamed to step-N (<see cref="AtomicFile.WriteDirectory"/>), then
    /// LATEST is replaced atomically. Older
    /// checkpoints beyond <paramref name="keep"/> are removed afterwards. Returns the checkpoint folder.
    /// </summary>
    public string Save(long step, Action<string> writeFiles, int keep = 3)
    {
        Create();
        string name = StepName(step);
        string final = Path.Combine(Checkpoints, name);

        // Same step written again (e.g. stop right after a periodic checkpoint) replaces it, never half-way. A write
        // that fails (a full disk, a quota) removes its temporary folder and leaves LATEST where it was.
        try
        {
            AtomicFile.WriteDirectory(final, tmp =>
            {
                writeFiles(tmp);
                var checksums = Directory.GetFiles(tmp).ToDictionary(f => Path.GetFileName(f), Checksums.Sha256File, StringComparer.Ordinal);
                AtomicFile.WriteAllText(Path.Combine(tmp, ManifestName), Checksums.FormatManifest(checksums));
            }, replace: true);

            AtomicFile.WriteAllText(LatestPath, Path.Combine("checkpoints", name) + "\n");
        }
        catch (IOException e)
        {
            string previous = LatestCheckpoint() is string p ? Path.GetRelativePath(Root, p) : "none yet";
            throw new K2Exception($"writing checkpoint {name} in {Checkpoints} failed: {e.Message} " +
                $"(LATEST still names the previous checkpoint: {previous})", e);
        }

        Prune(keep, name);
        return final;
    }

    /// <summary>
    /// The newest good checkpoint (<see cref="CheckpointPath.Candidates"/>: LATEST's target, then older step-N folders,
    /// newest first), each refused with a warning when its checksums fail. <paramref name="load"/> is tried on each good
    /// candidate; a <see cref="CorruptFileException"/> from it also moves on to the next. Null when there is no
    /// LATEST; a <see cref="CorruptFileException"/> listing every candidate and why it was refused when none loads.
    /// </summary>
    public (long Step, string Dir)? LoadLatest(Action<string> load)
    {
        if (!File.Exists(LatestPath))
        {
            return null;
        }

        var refused = new List<string>();
        foreach (var (step, dir) in CheckpointPath.Candidates(Root))
        {
            string? problem = CheckpointPath.Problem(dir);
            if (problem is null)
            {
                try
                {
                    load(dir);
                    return (step, dir);
                }
                catch (CorruptFileException e)
                {
                    problem = e.Message;
                }
            }

            refused.Add($"{Path.GetFileName(dir)}: {problem}");
            log.Warning("checkpoint {Dir} refused: {Problem}; falling back to an older one", dir, problem);
        }

        throw new CorruptFileException(Root, refused.Count == 0
            ? "LATEST names no checkpoint folder and checkpoints/ holds none; refusing to continue from nothing"
            : "no checkpoint of this run can be continued (" + string.Join("; ", refused) + ")");
    }

    private void Prune(int keep, string current)
    {
        var steps = Directory.GetDirectories(Checkpoints)
            .Select(d => (Step: CheckpointPath.ParseStep(Path.GetFileName(d)), Dir: d))
            .Where(c => c.Step is not null && Path.GetFileName(c.Dir) != current)
            .OrderByDescending(c => c.Step)
            .Skip(Math.Max(0, keep - 1));
        foreach (var (_, dir) in steps)
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Keeps the metrics.jsonl lines whose step or iteration (read by <paramref name="indexOf"/>) is at most
    /// <paramref name="last"/>, up to the first line that is not JSON (one cut short by a kill); a resumed run writes
    /// the rest again.
    /// </summary>
    public void TruncateMetrics(long last, Func<string, long> indexOf)
    {
        if (!File.Exists(Metrics))
        {
            return;
        }

        var keep = File.ReadLines(Metrics).Where(l => l.Trim().Length > 0)
            .TakeWhile(l =>
            {
                try
                {
                    return indexOf(l) <= last;
                }
                catch (System.Text.Json.JsonException)
                {
                    return false;
                }
            })
            .ToList();
        AtomicFile.WriteAllText(Metrics, keep.Count == 0 ? "" : string.Join('\n', keep) + "\n");
    }

    /// <summary>The folder LATEST points to, or null when there is no LATEST yet.</summary>
    public string? LatestCheckpoint() => File.Exists(LatestPath) ? Path.Combine(Root, File.ReadAllText(LatestPath).Trim()) : null;

    /// <summary>
    /// Opens the run for a job: deletes what a killed writer left (a checkpoint folder interrupted mid-write,
    /// <c>checkpoints/.step-N.tmp-PID-GUID</c>, and temporaries of LATEST or metrics.jsonl; <see cref="AtomicFile.DeleteAbandoned"/>);
    /// refuses a run directory that already holds a run unless <paramref name="resume"/>; with
    /// <paramref name="resume"/> and a checkpoint, loads the newest good one through <paramref name="load"/> (refusing when
    /// none passes its checksums) and returns its folder; otherwise returns null (a fresh start, with a warning when
    /// <paramref name="resume"/> found nothing to continue).
    /// </summary>
    public string? Open(bool resume, Action<string> load)
    {
        bool hasCheckpoint = File.Exists(LatestPath);
        if (hasCheckpoint && !resume)
        {
            throw new ConfigException($"{Root} already holds a run (LATEST exists): pass --resume to continue it, or choose a new --run-dir");
        }

        Create();
        foreach (string dir in (string[])[Root, Checkpoints])
        {
            foreach (string name in AtomicFile.DeleteAbandoned(dir))
            {
                log.Information("deleted {Name} in {Dir}, left by a process that is no longer running", name, dir);
            }
        }

        if (resume && hasCheckpoint)
        {
            return LoadLatest(load)!.Value.Dir;
        }

        if (resume)
        {
            log.Warning("{Root} has no checkpoint yet: starting from the beginning", Root);
        }

        return null;
    }
}
