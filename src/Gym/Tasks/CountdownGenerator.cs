using System.Globalization;
using System.Text;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Countdown: reach a target with given numbers (each at most once) and + - * /. Difficulty d gives d+2 numbers;
/// from d≥3 large numbers (25, 50, 75, 100) join. Every intermediate result of the reference solution is a
/// positive integer. The verifier accepts any expression that reaches the target with allowed numbers.
/// </summary>
public sealed class CountdownGenerator : TaskGenerator
{
    public const string SystemPrompt =
        "Reach the target using the given numbers, each at most once, with + - * / and parentheses. " +
        "Show your steps, then end with a line 'Answer: <expression>'.";

    public override string Kind => "countdown";

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        int n = difficulty + 2;
        while (true)
        {
            var numbers = new List<int>();
            int[] large = [25, 50, 75, 100];
            for (int i = 0; i < n; i++)
            {
                numbers.Add(difficulty >= 3 && rng.Next(0, 4) == 0 ? rng.Pick(large) : rng.Next(1, 11));
            }

            var order = new List<int>(numbers);
            rng.Shuffle(order);
            int use = rng.Next(2, n + 1);
            var chain = Chain.Build(ref rng, order, use);
            if (chain is null || chain.Value < 10 || chain.Value > 1000 || numbers.Contains((int)chain.Value))
            {
                continue;
            }

            long value = chain.Value;
            string expr = chain.Expression;
            var sorted = numbers.OrderBy(v => v).ToList();
            string list = string.Join(", ", sorted);
            string id = $"{string.Join(",", sorted)}->{value}";
            return new GymTask
            {
                Kind = Kind,
                Id = id,
                SystemPrompt = SystemPrompt,
                Prompt = $"Numbers: {list}. Target: {value}.",
                Answer = expr,
                Solution = chain.Steps + $"Answer: {expr}",
                DetailedSolution = SearchTrace(id, sorted, chain),
                Params = new Dictionary<string, string>
                {
                    ["numbers"] = string.Join(",", sorted),
                    ["target"] = value.ToString(CultureInfo.InvariantCulture),
                },
            };
        }
    }

    /// <summary>
    /// The worked solution as a search: up to three other chains over the task's numbers, each worked out step by step
    /// and checked against the target ("20, target 24: no."), then the answering chain ("24, target 24: yes."). The
    /// check writes the target beside the result, so the comparison is between two neighbouring numbers. The tries
    /// are drawn from a stream of their own, keyed by the task's id, so the task and its compact solution stay exactly
    /// those the generator makes without them.
    /// </summary>
    internal static string SearchTrace(string taskId, IReadOnlyList<int> numbers, Chain answer)
    {
        var rng = new GymRandom(GymRandom.Mix(0, 0, $"countdown-tries/{taskId}"));
        int wanted = rng.Next(0, 4);
        var tries = new List<Chain>();
        var seen = new HashSet<string>(StringComparer.Ordinal) { answer.Steps };
        for (int attempt = 0; tries.Count < wanted && attempt < 64; attempt++)
        {
            var order = new List<int>(numbers);
            rng.Shuffle(order);
            var chain = Chain.Build(ref rng, order, rng.Next(2, numbers.Count + 1));
            if (chain is not null && chain.Value != answer.Value && seen.Add(chain.Steps))
            {
                tries.Add(chain);
            }
        }

        var sb = new StringBuilder();
        foreach (var chain in tries)
        {
            sb.Append("Try:\n").Append(chain.Steps).Append(CultureInfo.InvariantCulture, $"{chain.Value}, target {answer.Value}: no.\n");
        }

        sb.Append("Try:\n").Append(answer.Steps).Append(CultureInfo.InvariantCulture, $"{answer.Value}, target {answer.Value}: yes.\n");
        return sb.Append("Answer: ").Append(answer.Expression).ToString();
    }

    /// <summary>
    /// A left-to-right chain over <paramref name="order"/>'s first <c>use</c> numbers, one operator drawn per step among
    /// those that keep every intermediate result a positive integer (a product at most 2,000); null when the draw
    /// would subtract a number from itself. <see cref="Steps"/> has one "a op b = c" line per step.
    /// </summary>
    internal sealed record Chain(long Value, string Expression, string Steps)
    {
        public static Chain? Build(ref GymRandom rng, IReadOnlyList<int> order, int use)
        {
            long value = order[0];
            string expr = order[0].ToString(CultureInfo.InvariantCulture);
            bool lastAdditive = false;
            var steps = new StringBuilder();
            for (int i = 1; i < use; i++)
            {
                long x = order[i];
                var choices = new List<char> { '+', '-' };
                if (value * x <= 2000)
                {
                    choices.Add('*');
                }

                if (x > 1 && value % x == 0)
                {
                    choices.Add('/');
                }

                char op = rng.Pick(choices);
                long next;
                switch (op)
                {
                    case '+':
                        next = value + x;
                        expr = $"{expr} + {x}";
                        lastAdditive = true;
                        break;
                    case '-' when value > x:
                        next = value - x;
                        expr = $"{expr} - {x}";
                        lastAdditive = true;
                        break;
                    case '-' when value < x:
                        next = x - value;
                        expr = lastAdditive ? $"{x} - ({expr})" : $"{x} - {expr}";
                        lastAdditive = true;
                        break;
                    case '-':
                        return null;
                    case '*':
                        next = value * x;
                        expr = lastAdditive ? $"({expr}) * {x}" : $"{expr} * {x}";
                        lastAdditive = false;
                        break;
                    default:
                        next = value / x;
                        expr = lastAdditive ? $"({expr}) / {x}" : $"{expr} / {x}";
                        lastAdditive = false;
                        break;
                }

                string shown = op == '-' && value < x ? $"{x} - {value}" : $"{value} {op} {x}";
                steps.Append(CultureInfo.InvariantCulture, $"{shown} = {next}\n");
                value = next;
            }

            return new Chain(value, expr, steps.ToString());
        }
    }
}
