using System.Globalization;
using K2RL.Gym.Critic;

namespace K2RL.Gym.Tasks;

/// <summary>The environments, verifiers and judges every registry starts with.</summary>
public static class BuiltinEnvironments
{
    public static void Register(GymRegistry r)
    {
        var arithmetic = new ArithmeticGenerator();
        var countdown = new CountdownGenerator();
        var listOps = new ListOpsGenerator();
        var toolUse = new ToolUseGenerator();
        var code = new CodeGenerator();

        r.AddEnvironment(new EnvironmentEntry("arithmetic", "Multi-digit + - * with worked solutions; numeric answer",
            _ => new TaskEnvironment("arithmetic", arithmetic, new GuardedVerifier(new NumericVerifier())), arithmetic));
        r.AddEnvironment(new EnvironmentEntry("countdown", "Reach a target with given numbers and + - * /; any valid expression scores",
            _ => new TaskEnvironment("countdown", countdown, new GuardedVerifier(new CountdownVerifier())), countdown));
        r.AddEnvironment(new EnvironmentEntry("list_ops", "Sort, reverse, filter, reduce integer lists; exact answer",
            _ => new TaskEnvironment("list_ops", listOps, new GuardedVerifier(new ExactMatchVerifier())), listOps));
        r.AddEnvironment(new EnvironmentEntry("tool_use",
            "Multi-turn: look up prices and compute totals with calculator and lookup tools; reward on the final answer",
            _ => new ToolTaskEnvironment("tool_use", toolUse, new GuardedVerifier(new NumericVerifier()),
                task => [BuiltinTools.Calculator(), BuiltinTools.Lookup(ToolUseGenerator.Table(task))]),
            toolUse, [BuiltinTools.CalculatorSpec, BuiltinTools.LookupSpec]));
        r.AddEnvironment(new EnvironmentEntry("code",
            "Write a python3 program; run against tests in a bubblewrap sandbox (no network, rlimits)",
            s => new TaskEnvironment("code", code,
                new GuardedVerifier(new UnitTestVerifier(s.Sandbox), requireAnswerLine: false),
                new EnvironmentLimits { MaxActionChars = 32_768 }), code));

        r.AddVerifier("exact", _ => new ExactMatchVerifier());
        r.AddVerifier("numeric", _ => new NumericVerifier());
        r.AddVerifier("format", _ => new FormatVerifier());
        r.AddVerifier("degenerate", _ => new DegenerateVerifier());
        r.AddVerifier("countdown", _ => new CountdownVerifier());
        r.AddVerifier("unit_tests", s => new UnitTestVerifier(s.Sandbox));

        r.AddJudge("http", o => new HttpJudge(
            new Uri(o.TryGetValue("endpoint", out string? e) ? e : throw new K2RL.Common.ConfigException("judge 'http' needs option 'endpoint'")),
            o.GetValueOrDefault("model", "judge"),
            int.Parse(o.GetValueOrDefault("max_concurrency", "4"), CultureInfo.InvariantCulture),
            TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("timeout_s", "60"), CultureInfo.InvariantCulture))));
    }
}
