using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl gym rubrics check [DIR] [--tags T ...] [--json]</c>: validates every rubric file of a directory (errors as
/// <c>file:line:column: ...</c>, all files checked) and prints which rubrics apply to which task tags, mandatory ones
/// marked. Exit code 1 when a file has an error (the report still lists what loaded).
/// </summary>
public sealed class GymRubricsCommand : ICommandProvider
{
    public string Group => "gym";

    internal sealed record CheckOptions(string Directory, IReadOnlyList<string> Tags, bool Json);

    public IEnumerable<Command> Build(CliContext context)
    {
        var dir = new Argument<string>("dir") { Description = "Rubric directory", DefaultValueFactory = _ => "configs/rubrics" };
        var tags = new Option<string[]>("--tags") { Description = "Also show the rubrics a prompt with these task tags is judged against", AllowMultipleArgumentsPerToken = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var check = new Command("check", "Validate rubric files and show which rubrics apply to which task tags") { dir, tags, json };
        check.SetAction(parse => Check(context, new CheckOptions(parse.GetValue(dir)!, parse.GetValue(tags) ?? [], parse.GetValue(json))));
        yield return new Command("rubrics", "Rubric files for the critic: check them") { check };
    }

    internal static int Check(CliContext context, CheckOptions o)
    {
        var result = RubricCheck.Check(o.Directory);
        var forTags = o.Tags.Count > 0 ? result.For(o.Tags) : null;
        if (o.Json)
        {
            context.Out.WriteLine(ToJson(result, o.Tags, forTags).ToJsonString());
        }
        else
        {
            WriteText(context.Out, result, o.Tags, forTags);
        }

        return result.Ok ? 0 : 1;
    }

    private static void WriteText(TextWriter w, RubricCheckResult result, IReadOnlyList<string> tags, IReadOnlyList<Rubric>? forTags)
    {
        w.WriteLine($"{result.Directory}: {result.Files.Count} file(s), {result.Rubrics.Count} rubric(s), " +
                    (result.Ok ? "no errors" : $"{result.Errors.Count} error(s)"));
        foreach (var f in result.Files)
        {
            w.WriteLine(f.Error is null
                ? $"  {Path.GetFileName(f.File)}: {string.Join(", ", f.Rubrics.Select(Label))}"
                : $"  {Path.GetFileName(f.File)}: not loaded");
        }

        foreach (string error in result.Errors)
        {
            w.WriteLine($"error: {error}");
        }

        if (!result.Ok)
        {
            w.WriteLine("Of the rubrics that loaded:");
        }

        w.WriteLine($"Every prompt: {List(result.ForEveryPrompt)}");
        foreach (var (tag, adds) in result.ByTag)
        {
            w.WriteLine($"Tag '{tag}' adds: {List(adds)}");
        }

        if (forTags is not null)
        {
            w.WriteLine(forTags.Count == 0
                ? $"A prompt tagged [{string.Join(", ", tags)}]: no rubric applies{RubricCheck.NoneApplyHint(result.Rubrics)}"
                : $"A prompt tagged [{string.Join(", ", tags)}]: {List(forTags)}");
        }

        w.WriteLine("(* mandatory: a response that violates it loses, and its RL reward is capped)");
    }

    private static string List(IReadOnlyList<Rubric> rubrics) => rubrics.Count == 0 ? "(none)" : string.Join(", ", rubrics.Select(Label));

    private static string Label(Rubric r) => $"{r.Name}{(r.Mandatory ? "*" : "")} ({KindName(r.Kind)})";

    private static string KindName(RubricKind kind) => JsonNamingPolicy.SnakeCaseLower.ConvertName(kind.ToString());

    private static JsonObject ToJson(RubricCheckResult result, IReadOnlyList<string> tags, IReadOnlyList<Rubric>? forTags)
    {
        static JsonArray Names(IEnumerable<Rubric> rs) => new(rs.Select(r => (JsonNode?)r.Name).ToArray());
        return new JsonObject
        {
            ["directory"] = result.Directory,
            ["ok"] = result.Ok,
            ["errors"] = new JsonArray(result.Errors.Select(e => (JsonNode?)e).ToArray()),
            ["files"] = new JsonArray(result.Files.Select(f => (JsonNode?)new JsonObject
            {
                ["file"] = f.File,
                ["error"] = f.Error,
                ["rubrics"] = new JsonArray(f.Rubrics.Select(r => (JsonNode?)new JsonObject
                {
                    ["name"] = r.Name, ["kind"] = KindName(r.Kind), ["mandatory"] = r.Mandatory,
                    ["applies_to"] = new JsonArray(r.AppliesTo.Select(t => (JsonNode?)t).ToArray()), ["source"] = r.Source,
                }).ToArray()),
            }).ToArray()),
            ["every_prompt"] = Names(result.ForEveryPrompt),
            ["by_tag"] = new JsonObject(result.ByTag.Select(t => KeyValuePair.Create(t.Tag, (JsonNode?)Names(t.Adds)))),
            ["for_tags"] = forTags is null ? null : new JsonObject { ["tags"] = new JsonArray(tags.Select(t => (JsonNode?)t).ToArray()), ["rubrics"] = Names(forTags) },
        };
    }
}
