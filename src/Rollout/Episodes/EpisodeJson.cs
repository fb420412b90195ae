using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym;

namespace K2RL.Rollout.Episodes;

/// <summary>The JSON pieces that <see cref="PausedEpisode"/> and <see cref="Trajectory"/> share: arrays, conversations, and field reads whose errors name the field.</summary>
internal static class EpisodeJson
{
    public static JsonObject Parse(string json, string source)
    {
        try
        {
            return JsonNode.Parse(json) as JsonObject ?? throw new CorruptFileException(source, "not a JSON object");
        }
        catch (JsonException e)
        {
            throw new CorruptFileException(source, $"malformed JSON: {e.Message}");
        }
    }

    public static JsonArray Messages(IEnumerable<Message> conversation)
    {
        var a = new JsonArray();
        foreach (var m in conversation)
        {
            var o = new JsonObject { ["role"] = (int)m.Role, ["content"] = m.Content };
            if (m.ToolCallId is { } id)
            {
                o["tool_call_id"] = id;
            }

            a.Add(o);
        }

        return a;
    }

    /// <summary>A routing record as base64 of little-endian int16 ids (−1 where not computed); null stays null.</summary>
    public static string? Routing(int[]? ids)
    {
        if (ids is null)
        {
            return null;
        }

        var bytes = new byte[ids.Length * 2];
        for (int i = 0; i < ids.Length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(2 * i), checked((short)ids[i]));
        }

        return Convert.ToBase64String(bytes);
    }

    public static JsonArray Array<T>(IEnumerable<T> values) => new(values.Select(v => JsonValue.Create(v)).ToArray<JsonNode?>());

    /// <summary>Typed reads of a JSON object whose errors name the field.</summary>
    public readonly struct Fields(JsonObject o, string source, string prefix = "")
    {
        public CorruptFileException Bad(string field, string what) => new(source, $"field '{prefix}{field}' {what}");

        public T Get<T>(string field) => As<T>(o[field] ?? throw Bad(field, "is missing"), field);

        public T[] Array<T>(string field, int length = -1)
        {
            if (o[field] is not JsonArray a)
            {
                throw Bad(field, "is missing or not an array");
            }

            if (length >= 0 && a.Count != length)
            {
                throw Bad(field, $"has {a.Count} entries, not {length} (one per token)");
            }

            var values = new T[a.Count];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = As<T>(a[i] ?? throw Bad($"{field}[{i}]", "is null"), $"{field}[{i}]");
            }

            return values;
        }

        public byte[] Base64(string field)
        {
            try
            {
                return Convert.FromBase64String(Get<string>(field));
            }
            catch (FormatException)
            {
                throw Bad(field, "is not base64");
            }
        }

        /// <summary>An optional routing record (<see cref="EpisodeJson.Routing"/>): null when absent; it holds the same number of ids for every token.</summary>
        public int[]? Routing(string field, int tokens)
        {
            if (o[field] is null)
            {
                return null;
            }

            var bytes = Base64(field);
            if (bytes.Length % 2 != 0 || (tokens > 0 && bytes.Length / 2 % tokens != 0))
            {
                throw Bad(field, $"holds {bytes.Length} bytes: not int16 ids for {tokens} tokens");
            }

            var ids = new int[bytes.Length / 2];
            for (int i = 0; i < ids.Length; i++)
            {
                ids[i] = System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(bytes.AsSpan(2 * i));
                if (ids[i] < -1)
                {
                    throw Bad(field, $"holds expert id {ids[i]}");
                }
            }

            return ids;
        }

        public List<Message> Messages(string field)
        {
            if (o[field] is not JsonArray a)
            {
                throw Bad(field, "is missing or not an array");
            }

            var messages = new List<Message>(a.Count);
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i] is not JsonObject m)
                {
                    throw Bad($"{field}[{i}]", "is not an object");
                }

                var mf = new Fields(m, source, $"{prefix}{field}[{i}].");
                int role = mf.Get<int>("role");
                if (!Enum.IsDefined((Role)role))
                {
                    throw mf.Bad("role", $"is {role}, not a role");
                }

                messages.Add(new Message((Role)role, mf.Get<string>("content"), m["tool_call_id"] is null ? null : mf.Get<string>("tool_call_id")));
            }

            return messages;
        }

        private T As<T>(JsonNode node, string field)
        {
            try
            {
                return node.GetValue<T>();
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw Bad(field, $"is not a {typeof(T).Name}");
            }
        }
    }
}
