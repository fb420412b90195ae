using System.Text.Json;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>
/// The subset of JSON Schema a tool declaration may use, checked before a tool is offered: a name the chat format can
/// carry (<c>functions.NAME:INDEX</c>), and parameters <c>{"type": "object", "properties": {NAME: {"type": T}, ...},
/// "required": [NAME, ...]}</c> with T one of string, integer, number, boolean, array, object. Arguments are checked
/// against it the same way.
/// </summary>
public static class ToolSchema
{
    private static readonly string[] Types = ["string", "integer", "number", "boolean", "array", "object"];

    /// <summary>Null when the declaration is usable, else what is wrong with it.</summary>
    public static string? Problem(ToolSpec spec)
    {
        if (spec.Name.Length == 0 || !spec.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            return $"tool name '{spec.Name}' is not letters, digits, '_' and '-'";
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(spec.ParametersSchemaJson);
        }
        catch (JsonException e)
        {
            return $"tool '{spec.Name}': parameters are not JSON ({e.Message})";
        }

        using (doc)
        {
            return ObjectProblem(doc.RootElement) is { } p ? $"tool '{spec.Name}': {p}" : null;
        }
    }

    private static string? ObjectProblem(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
            || type.GetString() != "object")
        {
            return "parameters must be a JSON schema of \"type\": \"object\"";
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        if (root.TryGetProperty("properties", out var props))
        {
            if (props.ValueKind != JsonValueKind.Object)
            {
                return "\"properties\" must be an object";
            }

            foreach (var p in props.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String
                    || !Types.Contains(t.GetString()))
                {
                    return $"property '{p.Name}' needs a \"type\" among {string.Join(", ", Types)}";
                }

                names.Add(p.Name);
            }
        }

        if (root.TryGetProperty("required", out var required))
        {
            if (required.ValueKind != JsonValueKind.Array)
            {
                return "\"required\" must be a list of property names";
            }

            foreach (var r in required.EnumerateArray())
            {
                if (r.ValueKind != JsonValueKind.String || !names.Contains(r.GetString()!))
                {
                    return $"required entry {r.GetRawText()} is not a declared property";
                }
            }
        }

        return null;
    }

    /// <summary>
    /// Null when <paramref name="arguments"/> fit the (valid) schema: an object with every required parameter, no
    /// undeclared one, each of its declared type; else what is wrong, as the tool's error says it to the policy.
    /// </summary>
    public static string? ArgumentProblem(ToolSpec spec, JsonElement arguments)
    {
        using var doc = JsonDocument.Parse(spec.ParametersSchemaJson);
        var root = doc.RootElement;
        var props = root.TryGetProperty("properties", out var p) ? p : default;
        if (root.TryGetProperty("required", out var required))
        {
            foreach (var r in required.EnumerateArray())
            {
                if (!arguments.TryGetProperty(r.GetString()!, out _))
                {
                    return $"missing argument '{r.GetString()}'";
                }
            }
        }

        foreach (var arg in arguments.EnumerateObject())
        {
            if (props.ValueKind != JsonValueKind.Object || !props.TryGetProperty(arg.Name, out var decl))
            {
                return $"unexpected argument '{arg.Name}'";
            }

            string type = decl.GetProperty("type").GetString()!;
            if (!Fits(arg.Value, type))
            {
                return $"argument '{arg.Name}' must be of type {type}";
            }
        }

        return null;
    }

    private static bool Fits(JsonElement v, string type) => type switch
    {
        "string" => v.ValueKind == JsonValueKind.String,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out _),
        "number" => v.ValueKind == JsonValueKind.Number,
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "array" => v.ValueKind == JsonValueKind.Array,
        _ => v.ValueKind == JsonValueKind.Object,
    };
}
