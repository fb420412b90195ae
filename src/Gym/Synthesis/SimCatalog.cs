using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>What a synthetic tool does to its domain's table: read one record, search records, or change stock.</summary>
public enum SimToolRole
{
    Get = 0,
    Search = 1,
    Reserve = 2,
}

/// <summary>
/// A tool's simulator: the result object of one call on the episode's table (which a <see cref="SimToolRole.Reserve"/>
/// tool changes). Arguments have been checked against the tool's schema. May throw: the episode is then rejected as
/// <c>simulator_threw</c>, never crashes the pipeline.
/// </summary>
public delegate JsonObject SimSimulator(SimTable table, JsonElement arguments);

/// <summary>
/// A synthetic tool: its declaration (name, description, JSON-schema parameters), the JSON type of each field of a
/// successful result (what an expert validates a result against) and its stateful simulator.
/// </summary>
public sealed record SimTool(SimToolRole Role, ToolSpec Spec, IReadOnlyDictionary<string, JsonValueKind> ResultTypes, SimSimulator Simulate);

/// <summary>
/// One domain of a category (<c>commerce → bookstore</c>): the noun of its records (<c>book</c>), a string attribute
/// every record has (<c>author</c>) with its possible values, and its tools (get, search, reserve).
/// </summary>
public sealed record SimDomain(string Category, string Name, string Noun, string Attribute, IReadOnlyList<string> AttributeValues,
    IReadOnlyList<SimTool> Tools)
{
    public SimTool Tool(SimToolRole role) => Tools.First(t => t.Role == role);
}

/// <summary>One record of a domain's table.</summary>
public sealed class SimEntity(string name, decimal price, int stock, string attribute)
{
    public string Name { get; } = name;

    public decimal Price { get; } = price;

    public int Stock { get; set; } = stock;

    public string Attribute { get; } = attribute;
}

/// <summary>A reservation a <see cref="SimToolRole.Reserve"/> call made.</summary>
public sealed record SimReservation(string Id, string Name, int Quantity);

/// <summary>The simulated backend of one episode: the domain's records and the reservations made so far.</summary>
public sealed class SimTable(IReadOnlyList<SimEntity> entities)
{
    public const int FirstReservation = 1001;

    public IReadOnlyList<SimEntity> Entities { get; } = entities;

    public List<SimReservation> Reservations { get; } = [];

    public SimEntity? Find(string name) => Entities.FirstOrDefault(e => e.Name == name.Trim());

    /// <summary>A fresh copy (the task keeps the initial table; each episode changes its own).</summary>
    public SimTable Clone() => new(Entities.Select(e => new SimEntity(e.Name, e.Price, e.Stock, e.Attribute)).ToList());
}

/// <summary>
/// The synthetic tools, by category → domain → tool. Every domain gets the same three tool templates over its own noun
/// and attribute (<c>get_book</c>, <c>search_books</c>, <c>reserve_book</c>), each with a JSON-schema signature and a
/// simulator over the episode's <see cref="SimTable"/>. Deterministic: the same catalog every time; the records of a
/// table are drawn per task from its seed (<see cref="AgenticTasks"/>). Tests and users may add domains or replace tools.
/// </summary>
public sealed record AgenticCatalog(IReadOnlyList<SimDomain> Domains)
{
    private static readonly (string Category, string Domain, string Noun, string Attribute, string[] Values)[] Table =
    [
        ("commerce", "bookstore", "book", "author", ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad"]),
        ("commerce", "grocery", "product", "aisle", ["A1", "B4", "C2", "D7", "E3"]),
        ("commerce", "hardware", "part", "bin", ["north", "south", "east", "west"]),
        ("travel", "hotel", "room", "view", ["sea", "garden", "city", "court"]),
        ("travel", "airline", "flight", "gate", ["G1", "G5", "G9", "G12"]),
        ("travel", "car_rental", "car", "color", ["red", "white", "black", "blue"]),
        ("events", "theater", "show", "venue", ["Rialto", "Globe", "Odeon", "Lyric"]),
        ("events", "museum", "tour", "guide", ["Ines", "Kofi", "Mara", "Yuto"]),
    ];

    /// <summary>Categories of the built-in catalog, in order.</summary>
    public IReadOnlyList<string> Categories => Domains.Select(d => d.Category).Distinct().ToList();

    public static AgenticCatalog Default() =>
        new(Table.Select(t => Domain(t.Category, t.Domain, t.Noun, t.Attribute, t.Values)).ToList());

    /// <summary>The domains of the given categories (all when empty); an unknown category is a <see cref="K2RL.Common.ConfigException"/>.</summary>
    public AgenticCatalog Only(IReadOnlyCollection<string> categories)
    {
        if (categories.Count == 0)
        {
            return this;
        }

        foreach (string c in categories.Where(c => !Categories.Contains(c)))
        {
            throw new K2RL.Common.ConfigException($"unknown tool category '{c}' (have: {string.Join(", ", Categories)})");
        }

        return new AgenticCatalog(Domains.Where(d => categories.Contains(d.Category)).ToList());
    }

    /// <summary>A domain with the three standard tools.</summary>
    public static SimDomain Domain(string category, string name, string noun, string attribute, IReadOnlyList<string> values) =>
        new(category, name, noun, attribute, values, [GetTool(noun, attribute), SearchTool(noun), ReserveTool(noun)]);

    private static SimTool GetTool(string noun, string attribute) => new(SimToolRole.Get,
        new ToolSpec($"get_{noun}", $"A {noun}'s name, price, stock and {attribute}.",
            Schema(("name", "string"))),
        new Dictionary<string, JsonValueKind>
        {
            ["name"] = JsonValueKind.String, ["price"] = JsonValueKind.Number, ["stock"] = JsonValueKind.Number, [attribute] = JsonValueKind.String,
        },
        (table, args) =>
        {
            string name = args.GetProperty("name").GetString()!;
            return table.Find(name) is { } e
                ? new JsonObject { ["name"] = e.Name, ["price"] = Number(e.Price), ["stock"] = e.Stock, [attribute] = e.Attribute }
                : Error("not_found", $"no {noun} named '{name}'");
        });

    private static SimTool SearchTool(string noun) => new(SimToolRole.Search,
        new ToolSpec($"search_{noun}s", $"Names of {noun}s priced at most max_price.", Schema(("max_price", "number"))),
        new Dictionary<string, JsonValueKind> { ["results"] = JsonValueKind.Array },
        (table, args) =>
        {
            decimal max = args.GetProperty("max_price").GetDecimal();
            var names = table.Entities.Where(e => e.Price <= max).Select(e => (JsonNode?)JsonValue.Create(e.Name)).ToArray();
            return new JsonObject { ["results"] = new JsonArray(names) };
        });

    private static SimTool ReserveTool(string noun) => new(SimToolRole.Reserve,
        new ToolSpec($"reserve_{noun}", $"Reserves a {noun}; gives the reservation id.",
            Schema(("name", "string"), ("quantity", "integer"))),
        new Dictionary<string, JsonValueKind> { ["reservation"] = JsonValueKind.String, ["remaining"] = JsonValueKind.Number },
        (table, args) =>
        {
            string name = args.GetProperty("name").GetString()!;
            int quantity = args.GetProperty("quantity").GetInt32();
            if (table.Find(name) is not { } e)
            {
                return Error("not_found", $"no {noun} named '{name}'");
            }

            if (quantity < 1 || quantity > e.Stock)
            {
                return Error("insufficient_stock", $"{e.Stock} in stock, {quantity} asked");
            }

            e.Stock -= quantity;
            string id = "R-" + (SimTable.FirstReservation + table.Reservations.Count).ToString(CultureInfo.InvariantCulture);
            table.Reservations.Add(new SimReservation(id, e.Name, quantity));
            return new JsonObject { ["reservation"] = id, ["remaining"] = e.Stock };
        });

    /// <summary>A compact parameters schema: every parameter required, of the given JSON-schema type.</summary>
    public static string Schema(params (string Name, string Type)[] parameters)
    {
        var props = new JsonObject();
        foreach (var (name, type) in parameters)
        {
            props[name] = new JsonObject { ["type"] = type };
        }

        var required = new JsonArray(parameters.Select(p => (JsonNode?)JsonValue.Create(p.Name)).ToArray());
        return new JsonObject { ["type"] = "object", ["properties"] = props, ["required"] = required }.ToJsonString();
    }

    /// <summary>A simulator's error result (a tool error the policy caused, not an injected failure).</summary>
    public static JsonObject Error(string code, string detail) => new() { ["error"] = code, ["detail"] = detail };

    /// <summary>A price as a JSON number without trailing zeros.</summary>
    public static JsonNode Number(decimal v) => JsonValue.Create(decimal.Parse(Expression.Format(v), CultureInfo.InvariantCulture));
}
