using System.Globalization;
using System.Text;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Multi-digit addition, subtraction and multiplication. Difficulty d: operands of d+1 digits for + and -,
/// (d+1)×d digits for ×. The worked solution goes column by column (carries, borrows) or by partial products; the
/// detailed one (<see cref="GymTask.DetailedSolution"/>, what synthesis can teach) names each column, writes every
/// borrow and every digit product, and carries the result so far from line to line, so no step needs more than one
/// digit fact and a copy of the line above.
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
            DetailedSolution = op switch
            {
                '+' => DetailedAddition(a, b),
                '-' => DetailedSubtraction(a, b),
                _ => DetailedMultiplication(a, b),
            } + $"\nAnswer: {result}",
        };
    }

    private static readonly string[] Places = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions"];

    private static string Place(int i) => i < Places.Length ? Places[i] : $"column {i + 1}";

    private static int DigitFromRight(string s, int i) => i < s.Length ? s[s.Length - 1 - i] - '0' : 0;

    /// <summary>"{x} has tens 0, ones 7.": a number's digits by place, highest first, zero-padded to <paramref name="places"/>
    /// places, so each column's line finds its digits by name rather than by counting from the right.</summary>
    public static string Digits(string x, int places) =>
        $"{x} has " + string.Join(", ", Enumerable.Range(0, places).Reverse().Select(i => $"{Place(i)} {DigitFromRight(x, i)}")) + ".\n";

    /// <summary>Addition by columns, each line ending with the digits written so far.</summary>
    public static string DetailedAddition(long a, long b)
    {
        var sb = new StringBuilder($"Add {a} and {b} column by column from the right.\n");
        string sa = a.ToString(CultureInfo.InvariantCulture), sb2 = b.ToString(CultureInfo.InvariantCulture);
        int n = Math.Max(sa.Length, sb2.Length), carry = 0;
        sb.Append(Digits(sa, n)).Append(Digits(sb2, n));
        string digits = "";
        for (int i = 0; i < n; i++)
        {
            int da = DigitFromRight(sa, i), db = DigitFromRight(sb2, i), s = da + db + carry;
            digits = (char)('0' + (s % 10)) + digits;
            sb.Append($"{Place(i)}: {da} + {db}{(carry > 0 ? " + 1" : "")} = {s}, write {s % 10}{(s >= 10 ? ", carry 1" : "")}. So far: {digits}\n");
            carry = s / 10;
        }

        if (carry > 0)
        {
            digits = "1" + digits;
            sb.Append($"{Place(n)}: the carry 1, write 1. So far: {digits}\n");
        }

        sb.Append($"So {a} + {b} = {a + b}.");
        return sb.ToString();
    }

    /// <summary>Subtraction by columns with every borrow written out: the digit lent from, then the column's difference.</summary>
    public static string DetailedSubtraction(long a, long b)
    {
        if (a < b)
        {
            return $"{b} is larger than {a}, so compute {b} - {a} and negate it.\n" + DetailedSubtraction(b, a) +
                $"\nSo {a} - {b} = {a - b}.";
        }

        var sb = new StringBuilder($"Subtract {b} from {a} column by column from the right.\n");
        string sa = a.ToString(CultureInfo.InvariantCulture), sb2 = b.ToString(CultureInfo.InvariantCulture);
        sb.Append(Digits(sa, sa.Length)).Append(Digits(sb2, sa.Length));
        int borrow = 0;
        string digits = "";
        for (int i = 0; i < sa.Length; i++)
        {
            // a column that lent to the one before takes 1 more off: top - (db + 1)
            int top = DigitFromRight(sa, i), db = DigitFromRight(sb2, i), take = db + borrow, d;
            sb.Append($"{Place(i)}: {top} - {db}{(borrow > 0 ? " - 1 (lent)" : "")}");
            if (top < take)
            {
                d = top + 10 - take;
                sb.Append($": {top} < {take}, borrow: {top + 10} - {take} = {d}");
                borrow = 1;
            }
            else
            {
                d = top - take;
                sb.Append(borrow > 0 ? $": {top} - {take} = {d}" : $" = {d}");
                borrow = 0;
            }

            digits = (char)('0' + d) + digits;
            sb.Append($". So far: {digits}\n");
        }

        sb.Append($"So {a} - {b} = {a - b}.");
        return sb.ToString();
    }

    /// <summary>
    /// Multiplication by a one-digit multiplier digit by digit with its carry; by a longer one, a partial product per
    /// digit of the multiplier, shifted, then their sum, a line each (digit by digit, or the sum by columns, would not
    /// fit gym eval's 256 tokens at difficulty 2: ~330).
    /// </summary>
    public static string DetailedMultiplication(long a, long b)
    {
        var sb = new StringBuilder(b < 10 ? $"Multiply {a} by {b} digit by digit from the right.\n" : $"Multiply {a} by each digit of {b} and add the partial products.\n");
        string sa = a.ToString(CultureInfo.InvariantCulture), sbs = b.ToString(CultureInfo.InvariantCulture);
        sb.Append(Digits(b < 10 ? sa : sbs, b < 10 ? sa.Length : sbs.Length));
        var parts = new List<long>();
        for (int j = 0; j < sbs.Length; j++)
        {
            int m = DigitFromRight(sbs, j);
            long part = a * m;
            long shifted = part * (long)Math.Pow(10, j);
            if (sbs.Length > 1)
            {
                sb.Append($"{Place(j)} digit {m}: {a} * {m} = {part}{(j > 0 ? $", shifted {j} place{(j > 1 ? "s" : "")}: {shifted}" : "")}\n");
                parts.Add(shifted);
                continue;
            }

            int carry = 0;
            string digits = "";
            for (int i = 0; i < sa.Length; i++)
            {
                int da = DigitFromRight(sa, i), p = (da * m) + carry;
                bool last = i == sa.Length - 1;
                sb.Append($"{Place(i)}: {da} * {m} = {da * m}{(carry > 0 ? $", + {carry} = {p}" : "")}");
                digits = (last ? p.ToString(CultureInfo.InvariantCulture) : ((char)('0' + (p % 10))).ToString()) + digits;
                sb.Append(last || p < 10 ? $", write {(last ? p : p % 10)}" : $", write {p % 10}, carry {p / 10}");
                sb.Append($". So far: {digits}\n");
                carry = p / 10;
            }

            parts.Add(part);
        }

        long total = parts.Sum();
        if (parts.Count > 1)
        {
            sb.Append($"{string.Join(" + ", parts)} = {total}\n");
        }

        sb.Append($"So {a} * {b} = {total}.");
        return sb.ToString();
    }

    public static string AdditionSteps(long a, long b)
    {
        var sb = new StringBuilder($"Add {a} and {b} column by column from the right.\n");
        string sa = a.ToString(), sb2 = b.ToString();
        int n = Math.Max(sa.Length, sb2.Length);
        int carry = 0;
        for (int i = 0; i < n; i++)
        {
            int da = DigitFromRight(sa, i), db = DigitFromRight(sb2, i), s = da + db + carry;
            sb.Append($"{da} + {db}{(carry > 0 ? " + 1 (carry)" : "")} = {s}: write {s % 10}{(s >= 10 ? ", carry 1" : "")}\n");
            carry = s / 10;
        }

        if (carry > 0)
        {
            sb.Append("write the final carry 1\n");
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
            int da = DigitFromRight(sa, i) - borrow, db = DigitFromRight(sb2, i);
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
