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
            long value = order[0];
            string expr = order[0].ToString(CultureInfo.InvariantCulture);
            bool lastAdditive = false;
            var steps = new StringBuilder();
            bool ok = true;
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
                        ok = false;
                        next = 0;
                        break;
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

                if (!ok)
                {
                    break;
                }

                string shown = op == '-' && value < x ? $"{x} - {value}" : $"{value} {op} {x}";
                steps.Append($"{shown} = {next}\n");
                value = next;
            }

            if (!ok || value < 10 || value > 1000 || numbers.Contains((int)value))
            {
                continue;
            }

            var sorted = numbers.OrderBy(v => v).ToList();
            string list = string.Join(", ", sorted);
            return new GymTask
            {
                Kind = Kind,
                Id = $"{string.Join(",", sorted)}->{value}",
                SystemPrompt = SystemPrompt,
                Prompt = $"Numbers: {list}. Target: {value}.",
                Answer = expr,
                Solution = steps + $"Answer: {expr}",
                Params = new Dictionary<string, string>
                {
                    ["numbers"] = string.Join(",", sorted),
                    ["target"] = value.ToString(CultureInfo.InvariantCulture),
                },
            };
        }
    }
}
