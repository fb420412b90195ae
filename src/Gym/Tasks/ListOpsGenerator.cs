using System.Text;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Operations on integer lists: sort, reverse, max, min, sum, length, dedupe, keep evens, first k. Difficulty d:
/// lists of 3+2d elements with values below 10·d; from d≥3 two operations are chained. Answers are a list
/// <c>[a, b, c]</c> or a number.
/// </summary>
public sealed class ListOpsGenerator : TaskGenerator
{
    public const string SystemPrompt =
        "Apply the operations to the list. Show your work, then end with a line 'Answer: <list or number>'.";

    private static readonly string[] ListOps = ["sort", "reverse", "dedupe", "evens", "first"];
    private static readonly string[] ScalarOps = ["max", "min", "sum", "length"];

    public override string Kind => "list_ops";

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        int n = 3 + 2 * difficulty;
        var list = new List<long>();
        for (int i = 0; i < n; i++)
        {
            list.Add(rng.Next(0, 10 * difficulty + 1));
        }

        var ops = new List<string>();
        int chained = difficulty >= 3 ? 2 : 1;
        for (int i = 0; i < chained - 1; i++)
        {
            ops.Add(rng.Pick(ListOps));
        }

        string last;
        do
        {
            last = rng.Pick(difficulty >= 2 && rng.Next(0, 2) == 0 ? ScalarOps : ListOps);
        }
        while (ops.Contains(last));

        ops.Add(last);
        int k = rng.Next(1, Math.Max(2, n / 2));
        var steps = new StringBuilder();
        var detailed = new StringBuilder();
        var current = list;
        string answer = "";
        foreach (string op in ops)
        {
            if (ScalarOps.Contains(op))
            {
                long v = op switch
                {
                    "max" => current.Count == 0 ? 0 : current.Max(),
                    "min" => current.Count == 0 ? 0 : current.Min(),
                    "sum" => current.Sum(),
                    _ => current.Count,
                };
                steps.Append($"{Describe(op, k)} of {Show(current)} is {v}.\n");
                detailed.Append($"{Describe(op, k)} of {Show(current)}:\n").Append(Walk(op, current, k)).Append($"{Describe(op, k)} is {v}.\n");
                answer = v.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
            else
            {
                var next = op switch
                {
                    "sort" => current.OrderBy(x => x).ToList(),
                    "reverse" => Enumerable.Reverse(current).ToList(),
                    "dedupe" => current.Distinct().ToList(),
                    "evens" => current.Where(x => x % 2 == 0).ToList(),
                    _ => current.Take(k).ToList(),
                };
                steps.Append($"{Describe(op, k)} of {Show(current)} gives {Show(next)}.\n");
                detailed.Append($"{Describe(op, k)} of {Show(current)}:\n").Append(Walk(op, current, k)).Append($"This gives {Show(next)}.\n");
                current = next;
                answer = Show(current);
            }
        }

        string opText = string.Join(", then ", ops.Select(o => Describe(o, k)));
        return new GymTask
        {
            Kind = Kind,
            Id = $"{Show(list)}|{string.Join(">", ops)}{(ops.Contains("first") ? ":" + k : "")}",
            SystemPrompt = SystemPrompt,
            Prompt = $"List: {Show(list)}. Operations: {opText}.",
            Answer = answer,
            Solution = steps + $"Answer: {answer}",
            DetailedSolution = detailed + $"Answer: {answer}",
        };
    }

    /// <summary>
    /// The detailed solution's walk through one operation, one element (or one pick) at a time: positions for reverse,
    /// first k and length; keep or drop for dedupe and evens; a running total or extreme for sum, max and min; for sort
    /// the smallest of what is left, again and again, by value and position.
    /// </summary>
    public static string Walk(string op, List<long> xs, int k)
    {
        var sb = new StringBuilder();
        string positions = "positions: " + string.Join(", ", xs.Select((x, i) => $"{i + 1}: {x}")) + "\n";
        switch (op)
        {
            case "sort":
                // each pick names its position, so what is left is what no line has named yet
                sb.Append(positions);
                sb.Append("the smallest left each time: ")
                    .Append(string.Join(", ", xs.Select((x, i) => (x, i)).OrderBy(p => p.x).ThenBy(p => p.i).Select(p => $"{p.x} (position {p.i + 1})")))
                    .Append('\n');
                break;
            case "reverse":
                sb.Append(positions);
                sb.Append($"from position {xs.Count} back to 1: ").Append(string.Join(", ", Enumerable.Reverse(xs))).Append('\n');
                break;
            case "first":
            case "length":
                sb.Append(positions);
                sb.Append(op == "first" ? $"positions 1 to {Math.Min(k, xs.Count)}\n" : $"the last position is {xs.Count}\n");
                break;
            case "dedupe":
                var seen = new HashSet<long>();
                sb.Append(string.Join(", ", xs.Select(x => seen.Add(x) ? $"{x} new" : $"{x} seen"))).Append('\n');
                break;
            case "evens":
                sb.Append(string.Join(", ", xs.Select(x => x % 2 == 0 ? $"{x} even" : $"{x} odd"))).Append('\n');
                break;
            case "sum":
                long total = 0;
                foreach (long x in xs)
                {
                    sb.Append($"{total} + {x} = {total + x}\n");
                    total += x;
                }

                break;
            default:   // max, min: the running extreme
                if (xs.Count == 0)
                {
                    sb.Append("the list is empty: 0\n");
                    break;
                }

                long best = xs[0];
                sb.Append($"start with {best}");
                foreach (long x in xs.Skip(1))
                {
                    best = op == "max" ? Math.Max(best, x) : Math.Min(best, x);
                    sb.Append($"; {x}: {best}");
                }

                sb.Append('\n');
                break;
        }

        return sb.ToString();
    }

    internal static string Show(IEnumerable<long> xs) => "[" + string.Join(", ", xs) + "]";

    private static string Describe(string op, int k) => op switch
    {
        "sort" => "sort ascending",
        "reverse" => "reverse",
        "dedupe" => "remove duplicates (keep first occurrences)",
        "evens" => "keep only even numbers",
        "first" => $"take the first {k} elements",
        "max" => "the maximum",
        "min" => "the minimum",
        "sum" => "the sum",
        _ => "the length",
    };
}
