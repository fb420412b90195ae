using System.Text.Json;
using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>What a tool call returned. <see cref="IsError"/> marks a call the policy got wrong (penalized).</summary>
public readonly record struct ToolOutcome(string Content, bool IsError)
{
    public static ToolOutcome Ok(string content) => new(content, false);

    public static ToolOutcome Error(string message) => new("error: " + message, true);
}

/// <summary>A tool an environment executes. Invoke never throws for bad arguments: it returns an error outcome.</summary>
public interface ITool
{
    ToolSpec Spec { get; }

    ToolOutcome Invoke(JsonElement arguments);
}

/// <summary>A tool from a spec and a function; <see cref="StringArgs"/> builds the spec for string parameters.</summary>
public sealed class FunctionTool(ToolSpec spec, Func<JsonElement, ToolOutcome> invoke) : ITool
{
    public ToolSpec Spec => spec;

    public ToolOutcome Invoke(JsonElement arguments) => invoke(arguments);

    /// <summary>A spec whose parameters are required strings: <c>("key", "the key to look up")</c>.</summary>
    public static ToolSpec StringArgs(string name, string description, params (string Name, string Description)[] args)
    {
        var props = args.ToDictionary(a => a.Name, a => (object)new Dictionary<string, string>
        {
            ["type"] = "string",
            ["description"] = a.Description,
        });
        string schema = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["type"] = "object",
            ["properties"] = props,
            ["required"] = args.Select(a => a.Name).ToArray(),
        });
        return new ToolSpec(name, description, schema);
    }

    /// <summary>Reads a required string argument, or says what is wrong.</summary>
    public static bool TryGetString(JsonElement args, string name, out string value, out ToolOutcome error)
    {
        value = "";
        error = default;
        if (!args.TryGetProperty(name, out var v))
        {
            error = ToolOutcome.Error($"missing argument '{name}'");
            return false;
        }

        if (v.ValueKind != JsonValueKind.String)
        {
            error = ToolOutcome.Error($"argument '{name}' must be a string");
            return false;
        }

        value = v.GetString()!;
        return true;
    }
}

/// <summary>The built-in tools: a calculator and a key-value lookup.</summary>
public static class BuiltinTools
{
    public static readonly ToolSpec CalculatorSpec = FunctionTool.StringArgs("calculator",
        "Evaluates an arithmetic expression with + - * / and parentheses, exactly.",
        ("expression", "e.g. 3 * 4.25 + 2 * 1.5"));

    public static readonly ToolSpec LookupSpec = FunctionTool.StringArgs("lookup",
        "Looks up the value stored under a key (for example an item's unit price).", ("key", "the key"));

    public static ITool Calculator() => new FunctionTool(CalculatorSpec, args =>
    {
        if (!FunctionTool.TryGetString(args, "expression", out string expr, out var error))
        {
            return error;
        }

        return Expression.TryEvaluate(expr, out decimal v, out string? why, out _)
            ? ToolOutcome.Ok(Expression.Format(v))
            : ToolOutcome.Error(why ?? "cannot evaluate");
    });

    public static ITool Lookup(IReadOnlyDictionary<string, string> table) => new FunctionTool(LookupSpec, args =>
    {
        if (!FunctionTool.TryGetString(args, "key", out string key, out var error))
        {
            return error;
        }

        return table.TryGetValue(key.Trim(), out string? value)
            ? ToolOutcome.Ok(value)
            : ToolOutcome.Ok($"no value for key '{key}'");
    });
}
