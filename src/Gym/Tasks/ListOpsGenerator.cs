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
        };
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
