using System.Text;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Multi-digit addition, subtraction and multiplication. Difficulty d: operands of d+1 digits for + and -,
/// (d+1)×d digits for ×. The worked solution goes column by column (carries, borrows) or by partial products.
/// </summary>
public sealed class ArithmeticGenerator : TaskGenerator
{
    public const string SystemPrompt = "Solve the problem. Show your work, then end with a line 'Answer: <number>'.";

    public override string Kind => "arithmetic";

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        char op = rng.Pick(['+', '-', '*']);
        long a, b;
        if (op == '*')
        {
            a = rng.NextWithDigits(difficulty + 1);
            b = rng.NextWithDigits(Math.Max(1, difficulty));
        }
        else
        {
            a = rng.NextWithDigits(difficulty + 1);
            b = rng.NextWithDigits(rng.Next(Math.Max(1, difficulty), difficulty + 2));
        }

        long result = op switch { '+' => a + b, '-' => a - b, _ => a * b };
        string symbol = op == '*' ? "*" : op.ToString();
        string solution = op switch
        {
            '+' => AdditionSteps(a, b),
            '-' => SubtractionSteps(a, b),
            _ => MultiplicationSteps(a, b),
        } + $"\nAnswer: {result}";
        return new GymTask
        {
            Kind = Kind,
            Id = $"{a}{symbol}{b}",
            SystemPrompt = SystemPrompt,
            Prompt = $"What is {a} {symbol} {b}?",
            Answer = result.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Solution = solution,
        };
    }

    public static string AdditionSteps(long a, long b)
    {
        var sb = new StringBuilder($"Add {a} and {b} column by column from the right.\n");
        string sa = a.ToString(), sb2 = b.ToString();
        int n = Math.Max(sa.Length, sb2.Length);
        int carry = 0;
        var digits = new StringBuilder();
        for (int i = 0; i < n; i++)
        {
            int da = i < sa.Length ? sa[sa.Length - 1 - i] - '0' : 0;
            int db = i < sb2.Length ? sb2[sb2.Length - 1 - i] - '0' : 0;
            int s = da + db + carry;
            sb.Append($"{da} + {db}{(carry > 0 ? " + 1 (carry)" : "")} = {s}: write {s % 10}{(s >= 10 ? ", carry 1" : "")}\n");
            carry = s / 10;
            digits.Insert(0, (char)('0' + s % 10));
        }

        if (carry > 0)
        {
            sb.Append("write the final carry 1\n");
            digits.Insert(0, '1');
        }

        sb.Append($"So {a} + {b} = {a + b}.");
        return sb.ToString();
    }

    public static string SubtractionSteps(long a, long b)
    {
        if (a < b)
        {
            return $"{b} is larger than {a}, so compute {b} - {a} and negate it.\n" + SubtractionSteps(b, a) +
                $"\nSo {a} - {b} = {a - b}.";
        }

        var sb = new StringBuilder($"Subtract {b} from {a} column by column from the right.\n");
        string sa = a.ToString(), sb2 = b.ToString();
        int borrow = 0;
        for (int i = 0; i < sa.Length; i++)
        {
            int da = sa[sa.Length - 1 - i] - '0' - borrow;
            int db = i < sb2.Length ? sb2[sb2.Length - 1 - i] - '0' : 0;
            if (da < db)
            {
                sb.Append($"{da} < {db}: borrow, {da + 10} - {db} = {da + 10 - db}\n");
                borrow = 1;
            }
            else
            {
                sb.Append($"{da} - {db} = {da - db}\n");
                borrow = 0;
            }
        }

        sb.Append($"So {a} - {b} = {a - b}.");
        return sb.ToString();
    }

    public static string MultiplicationSteps(long a, long b)
    {
        var sb = new StringBuilder($"Multiply {a} by each digit of {b} and add the partial products.\n");
        string sbs = b.ToString();
        long total = 0;
        var parts = new List<long>();
        for (int i = 0; i < sbs.Length; i++)
        {
            int d = sbs[sbs.Length - 1 - i] - '0';
            long place = (long)Math.Pow(10, i);
            long part = a * d * place;
            parts.Add(part);
            total += part;
            sb.Append($"{a} * {d * place} = {part}\n");
        }

        sb.Append(parts.Count > 1 ? $"{string.Join(" + ", parts)} = {total}\n" : "");
        sb.Append($"So {a} * {b} = {total}.");
        return sb.ToString();
    }
}
