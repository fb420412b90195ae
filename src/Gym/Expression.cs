using System.Globalization;

namespace K2RL.Gym;

/// <summary>
/// Evaluates arithmetic expressions (+ - * / × ÷, parentheses, unary minus, decimals) exactly in
/// <see cref="decimal"/>. Used by the calculator tool and the countdown verifier. Never throws on bad input.
/// </summary>
public static class Expression
{
    public const int MaxLength = 1000;

    /// <summary>Evaluates <paramref name="text"/>; on success <paramref name="literals"/> lists the numbers it used.</summary>
    public static bool TryEvaluate(string text, out decimal value, out string? error, out List<decimal> literals)
    {
        literals = [];
        value = 0;
        if (text.Length > MaxLength)
        {
            error = $"expression longer than {MaxLength} chars";
            return false;
        }

        var p = new Parser(text, literals);
        try
        {
            value = p.ParseExpression(0);
            p.SkipSpace();
            if (p.Pos != text.Length)
            {
                error = $"unexpected '{text[p.Pos]}' at position {p.Pos}";
                return false;
            }

            error = null;
            return true;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
        catch (DivideByZeroException)
        {
            error = "division by zero";
            return false;
        }
        catch (OverflowException)
        {
            error = "number too large";
            return false;
        }
    }

    /// <summary>Formats a result without trailing zeros (<c>12.50</c> → <c>12.5</c>).</summary>
    public static string Format(decimal v)
    {
        string s = v.ToString(CultureInfo.InvariantCulture);
        if (s.Contains('.'))
        {
            s = s.TrimEnd('0').TrimEnd('.');
        }

        return s == "-0" ? "0" : s;
    }

    private sealed class Parser(string text, List<decimal> literals)
    {
        public int Pos;

        public void SkipSpace()
        {
            while (Pos < text.Length && char.IsWhiteSpace(text[Pos]))
            {
                Pos++;
            }
        }

        public decimal ParseExpression(int depth)
        {
            if (depth > 64)
            {
                throw new FormatException("expression nested too deeply");
            }

            decimal acc = ParseTerm(depth);
            while (true)
            {
                SkipSpace();
                if (Pos >= text.Length)
                {
                    return acc;
                }

                char c = text[Pos];
                if (c == '+')
                {
                    Pos++;
                    acc += ParseTerm(depth);
                }
                else if (c is '-' or '−')
                {
                    Pos++;
                    acc -= ParseTerm(depth);
                }
                else
                {
                    return acc;
                }
            }
        }

        private decimal ParseTerm(int depth)
        {
            decimal acc = ParseFactor(depth);
            while (true)
            {
                SkipSpace();
                if (Pos >= text.Length)
                {
                    return acc;
                }

                char c = text[Pos];
                if (c is '*' or '×')
                {
                    Pos++;
                    acc *= ParseFactor(depth);
                }
                else if (c is '/' or '÷')
                {
                    Pos++;
                    decimal d = ParseFactor(depth);
                    acc /= d;
                }
                else
                {
                    return acc;
                }
            }
        }

        private decimal ParseFactor(int depth)
        {
            SkipSpace();
            if (Pos >= text.Length)
            {
                throw new FormatException("expression ends early");
            }

            char c = text[Pos];
            if (c is '-' or '−')
            {
                Pos++;
                return -ParseFactor(depth + 1);
            }

            if (c == '+')
            {
                Pos++;
                return ParseFactor(depth + 1);
            }

            if (c == '(')
            {
                Pos++;
                decimal v = ParseExpression(depth + 1);
                SkipSpace();
                if (Pos >= text.Length || text[Pos] != ')')
                {
                    throw new FormatException("missing ')'");
                }

                Pos++;
                return v;
            }

            int start = Pos;
            while (Pos < text.Length && (char.IsAsciiDigit(text[Pos]) || text[Pos] == '.'))
            {
                Pos++;
            }

            if (start == Pos)
            {
                throw new FormatException($"unexpected '{c}' at position {Pos}");
            }

            string digits = text[start..Pos];
            if (!decimal.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal n))
            {
                throw new FormatException($"bad number '{text[start..Pos]}'");
            }

            literals.Add(n);
            return n;
        }
    }
}
