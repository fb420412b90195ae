using K2RL.Common;

namespace K2RL.Gym.Critic.Workbench;

/// <summary>One rubric file checked: its rubrics, or the loader's error (<c>file:line:column: ...</c>).</summary>
public sealed record RubricFileCheck(string File, IReadOnlyList<Rubric> Rubrics, string? Error);

/// <summary>
/// What <c>k2rl gym rubrics check</c> reports on a rubric directory: every file's rubrics or error (all files are
/// checked, not only up to the first bad one), names defined twice across files, and which rubrics apply to which
/// task tags.
/// </summary>
public sealed record RubricCheckResult(string Directory, IReadOnlyList<RubricFileCheck> Files, IReadOnlyList<string> Errors)
{
    public bool Ok => Errors.Count == 0;

    /// <summary>The rubrics of the files that loaded.</summary>
    public IReadOnlyList<Rubric> Rubrics => Files.SelectMany(f => f.Rubrics).ToList();

    /// <summary>Rubrics that apply to every prompt whatever its tags (core, prescriptive, task-specific without tags).</summary>
    public IReadOnlyList<Rubric> ForEveryPrompt => Rubrics.Where(r => r.AppliesToTags([])).ToList();

    /// <summary>Each tag named by an <c>applies_to</c>, with the task-specific rubrics it adds, in tag order.</summary>
    public IReadOnlyList<(string Tag, IReadOnlyList<Rubric> Adds)> ByTag =>
        RubricCheck.TaskTags(Rubrics).Select(t => (t, (IReadOnlyList<Rubric>)Rubrics.Where(r => r.AppliesTo.Contains(t)).ToList())).ToList();

    /// <summary>The rubrics a prompt with these tags is judged against.</summary>
    public IReadOnlyList<Rubric> For(IReadOnlyCollection<string> tags) => Rubrics.Where(r => r.AppliesToTags(tags)).ToList();
}

/// <summary>Checks rubric directories for <c>k2rl gym rubrics check</c> and explains which rubrics apply where.</summary>
public static class RubricCheck
{
    public static RubricCheckResult Check(string directory)
    {
        var files = new List<RubricFileCheck>();
        var errors = new List<string>();
        foreach (string file in RubricLoader.Files(directory))
        {
            try
            {
                files.Add(new RubricFileCheck(file, RubricLoader.LoadFile(file), null));
            }
            catch (ConfigException e)
            {
                files.Add(new RubricFileCheck(file, [], e.Message));
                errors.Add(e.Message);
            }
        }

        if (files.Count == 0)
        {
            errors.Add($"{directory}: no rubric files (*.yaml, *.yml)");
        }

        try
        {
            RubricLoader.Merge(files.SelectMany(f => f.Rubrics));
        }
        catch (ConfigException e)
        {
            errors.Add(e.Message);
        }

        return new RubricCheckResult(directory, files, errors);
    }

    /// <summary>Every tag some task-specific rubric applies to, sorted.</summary>
    public static IReadOnlyList<string> TaskTags(IEnumerable<Rubric> rubrics) =>
        rubrics.Where(r => r.Kind == RubricKind.TaskSpecific).SelectMany(r => r.AppliesTo).Distinct().Order(StringComparer.Ordinal).ToList();

    /// <summary>Why no rubric applies, for an error message: an empty directory, or the tags its rubrics want.</summary>
    public static string NoneApplyHint(IReadOnlyList<Rubric> rubrics) => rubrics.Count == 0
        ? " (it holds no rubrics)"
        : $" (its rubrics are task-specific and apply to the tags: {string.Join(", ", TaskTags(rubrics))})";
}
