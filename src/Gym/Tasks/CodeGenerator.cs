using System.Text;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Short stdin→stdout programs with tests, for the interpreter <c>python3</c>. Each template has parameters drawn
/// from the seed, a reference program (the worked solution) and a C# oracle for the expected output. Difficulty
/// unlocks templates: 1 (sums, ranges, digit sums), 2 (multiples, words, character counts), 3+ (FizzBuzz variants,
/// Fibonacci modulo).
/// </summary>
public sealed class CodeGenerator : TaskGenerator
{
    public const string SystemPrompt =
        "Write a complete program. Reply with the program in one fenced code block (```python ... ```).";

    public const string Interpreter = "python3";

    public override string Kind => "code";

    private delegate (string Prompt, string Program, Func<GymRandom, string> Input, Func<string, string> Oracle, string Key)
        Template(ref GymRandom rng);

    private static readonly (int Level, Template Make)[] Templates =
    [
        (1, SumTimes), (1, MaxMinusMin), (1, DigitSum), (2, CountMultiples), (2, ReverseWords), (2, CountChars),
        (3, FizzBuzz), (3, FibMod),
    ];

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        var available = Templates.Where(t => t.Level <= difficulty).ToList();
        var (prompt, program, input, oracle, key) = rng.Pick(available).Make(ref rng);
        var tests = new List<TestCase>();
        for (int i = 0; i < 3; i++)
        {
            var inputRng = new GymRandom(rng.NextUInt64());
            string stdin = input(inputRng);
            tests.Add(new TestCase(stdin, oracle(stdin)));
        }

        return new GymTask
        {
            Kind = Kind,
            Id = key,
            SystemPrompt = SystemPrompt,
            Prompt = $"Write a {Interpreter} program that {prompt}",
            Answer = program,
            Solution = "```python\n" + program + "```",
            Params = new Dictionary<string, string> { ["interpreter"] = Interpreter },
            Tests = tests,
        };
    }

    private static string Ints(GymRandom r, int n, int lo, int hi) =>
        string.Join(' ', Enumerable.Range(0, n).Select(_ => r.Next(lo, hi))) + "\n";

    private static long[] ParseInts(string s) =>
        s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) SumTimes(ref GymRandom rng)
    {
        int k = rng.Next(2, 100);
        return ($"reads one line of space-separated integers and prints {k} times their sum.",
            $"nums = list(map(int, input().split()))\nprint({k} * sum(nums))\n",
            r => Ints(r, r.Next(1, 8), -50, 100),
            s => (k * ParseInts(s).Sum()).ToString(),
            $"sum_times:{k}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) MaxMinusMin(ref GymRandom rng)
    {
        int c = rng.Next(0, 100);
        return ($"reads one line of space-separated integers and prints their maximum minus their minimum, plus {c}.",
            $"nums = list(map(int, input().split()))\nprint(max(nums) - min(nums) + {c})\n",
            r => Ints(r, r.Next(1, 8), -100, 100),
            s => (ParseInts(s).Max() - ParseInts(s).Min() + c).ToString(),
            $"max_minus_min:{c}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) DigitSum(ref GymRandom rng)
    {
        int k = rng.Next(1, 100);
        return ($"reads a non-negative integer n and prints the sum of its decimal digits multiplied by {k}.",
            $"n = input().strip()\nprint({k} * sum(int(d) for d in n))\n",
            r => r.Next(0, 1_000_000_000) + "\n",
            s => (k * s.Trim().Sum(ch => ch - '0')).ToString(),
            $"digit_sum:{k}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) CountMultiples(ref GymRandom rng)
    {
        int a = rng.Next(2, 100);
        return ($"reads an integer n and prints how many of the numbers 1..n are divisible by {a}.",
            $"n = int(input())\nprint(sum(1 for i in range(1, n + 1) if i % {a} == 0))\n",
            r => r.Next(0, 500) + "\n",
            s => (long.Parse(s.Trim()) / a).ToString(),
            $"count_multiples:{a}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) ReverseWords(ref GymRandom rng)
    {
        string sep = rng.Pick(["-", ",", " ", "+", "/", "|", ";", ":", "_", " - ", ", ", ".."]);
        string[] words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"];
        return ($"reads one line of words separated by spaces and prints the words in reverse order joined by '{sep}'.",
            $"words = input().split()\nprint('{sep}'.join(reversed(words)))\n",
            r => string.Join(' ', Enumerable.Range(0, r.Next(1, 6)).Select(_ => r.Pick(words))) + "\n",
            s => string.Join(sep, s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Reverse()),
            $"reverse_words:{sep}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) CountChars(ref GymRandom rng)
    {
        var chars = new SortedSet<char>();
        int count = rng.Next(2, 5);
        for (int i = 0; i < count; i++)
        {
            chars.Add((char)('a' + rng.Next(0, 26)));
        }

        string set = new(chars.ToArray());
        return ($"reads one line and prints how many of its characters are one of '{set}'.",
            $"line = input()\nprint(sum(1 for ch in line if ch in '{set}'))\n",
            r => new string(Enumerable.Range(0, r.Next(0, 30)).Select(_ => (char)('a' + r.Next(0, 26))).ToArray()) + "\n",
            s => s.TrimEnd('\n').Count(ch => set.Contains(ch)).ToString(),
            $"count_chars:{set}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) FizzBuzz(ref GymRandom rng)
    {
        int a = rng.Next(2, 10);
        int b = rng.Next(a + 1, 16);
        return ($"reads an integer n and prints the numbers 1..n, one per line, but 'Fizz' for multiples of {a}, " +
                $"'Buzz' for multiples of {b}, and 'FizzBuzz' for multiples of both.",
            $"n = int(input())\nfor i in range(1, n + 1):\n    s = ('Fizz' if i % {a} == 0 else '') + ('Buzz' if i % {b} == 0 else '')\n    print(s or i)\n",
            r => r.Next(1, 40) + "\n",
            s =>
            {
                var sb = new StringBuilder();
                long n = long.Parse(s.Trim());
                for (long i = 1; i <= n; i++)
                {
                    string t = (i % a == 0 ? "Fizz" : "") + (i % b == 0 ? "Buzz" : "");
                    sb.Append(t.Length > 0 ? t : i.ToString()).Append('\n');
                }

                return sb.ToString();
            },
            $"fizzbuzz:{a},{b}");
    }

    private static (string, string, Func<GymRandom, string>, Func<string, string>, string) FibMod(ref GymRandom rng)
    {
        int m = rng.Next(7, 1000);
        return ($"reads an integer n ≥ 0 and prints F(n) mod {m}, where F(0) = 0, F(1) = 1, F(k) = F(k-1) + F(k-2).",
            $"n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, (a + b) % {m}\nprint(a % {m})\n",
            r => r.Next(0, 300) + "\n",
            s =>
            {
                long n = long.Parse(s.Trim()), a = 0, b = 1;
                for (long i = 0; i < n; i++)
                {
                    (a, b) = (b, (a + b) % m);
                }

                return (a % m).ToString();
            },
            $"fib_mod:{m}");
    }
}
