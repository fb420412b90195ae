using System.Globalization;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>What the (simulated) user asks in one request of an agentic task.</summary>
public enum RequestKind
{
    Price = 0,
    Stock = 1,
    Cost = 2,
    Reserve = 3,
    Search = 4,
    ReserveCheapest = 5,
    Attribute = 6,
}

/// <summary>One user request: its text and parameters (the record it is about, a quantity, a price bound).</summary>
public sealed record AgenticRequest(RequestKind Kind, string Text, string Target = "", int Quantity = 0, decimal MaxPrice = 0);

/// <summary>A call planned to fail: the <see cref="Call"/>-th tool call of the episode (0-based) gets <see cref="Kind"/>.</summary>
public sealed record InjectedFailure(int Call, string Kind)
{
    public const string Timeout = "timeout", Error = "error", WrongType = "wrong_type";

    public static readonly IReadOnlyList<string> Kinds = [Timeout, Error, WrongType];
}

/// <summary>What the job asks of the synthetic agentic tasks: how often a tool call fails, and how.</summary>
public sealed record AgenticOptions
{
    /// <summary>Share of tasks whose episode gets one injected tool failure, in [0, 1].</summary>
    public double FailureShare { get; init; } = 0.3;

    public IReadOnlyList<string> FailureKinds { get; init; } = InjectedFailure.Kinds;
}

/// <summary>
/// A synthetic agentic task: an agent (system prompt + a tool subset of one domain, sometimes with the Gym's real
/// calculator), the requests a simulated user makes one after another, the initial table the simulator starts from,
/// the failure to inject, and the rubric a trajectory must meet (<see cref="RubricJson"/>).
/// </summary>
public sealed record AgenticTask
{
    public required string Id { get; init; }

    public int Difficulty { get; init; }

    public required SimDomain Domain { get; init; }

    /// <summary>The agent's simulated tools (a subset of the domain's).</summary>
    public required IReadOnlyList<SimTool> Tools { get; init; }

    /// <summary>Whether the agent also has the real <c>calculator</c> (<see cref="BuiltinTools.Calculator"/>).</summary>
    public bool Calculator { get; init; }

    public required string SystemPrompt { get; init; }

    public required IReadOnlyList<AgenticRequest> Requests { get; init; }

    public required SimTable Initial { get; init; }

    public InjectedFailure? Failure { get; init; }

    /// <summary>The declarations the agent sees, in order.</summary>
    public IReadOnlyList<ToolSpec> ToolSpecs =>
        [.. Tools.Select(t => t.Spec), .. Calculator ? new[] { BuiltinTools.CalculatorSpec } : []];

    /// <summary>The reference answer of each request (a reservation's answer is its id, known once it is made: <c>R-1001</c>).</summary>
    public IReadOnlyList<string> ExpectedAnswers() => Requests.Select(Expected).ToList();

    /// <summary>The reservations a correct trajectory leaves behind (name, quantity), in order.</summary>
    public IReadOnlyList<(string Name, int Quantity)> ExpectedReservations() => Requests
        .Where(r => r.Kind is RequestKind.Reserve or RequestKind.ReserveCheapest)
        .Select(r => (r.Kind == RequestKind.Reserve ? r.Target : Cheapest(r.MaxPrice).Name, r.Quantity)).ToList();

    /// <summary>The calls a correct trajectory makes, in order (tool name and arguments); the calculator's expression may vary.</summary>
    public IReadOnlyList<(string Tool, JsonObject Arguments)> PlannedCalls()
    {
        var calls = new List<(string, JsonObject)>();
        string get = Domain.Tool(SimToolRole.Get).Spec.Name, reserve = Domain.Tool(SimToolRole.Reserve).Spec.Name;
        foreach (var r in Requests)
        {
            switch (r.Kind)
            {
                case RequestKind.Price or RequestKind.Stock:
                    calls.Add((get, new JsonObject { ["name"] = r.Target }));
                    break;
                case RequestKind.Cost:
                    calls.Add((get, new JsonObject { ["name"] = r.Target }));
                    calls.Add((BuiltinTools.CalculatorSpec.Name, new JsonObject { ["expression"] = CostExpression(r) }));
                    break;
                case RequestKind.Reserve:
                    calls.Add((get, new JsonObject { ["name"] = r.Target }));
                    calls.Add((reserve, new JsonObject { ["name"] = r.Target, ["quantity"] = r.Quantity }));
                    break;
                case RequestKind.Search:
                    calls.Add((Domain.Tool(SimToolRole.Search).Spec.Name, new JsonObject { ["max_price"] = AgenticCatalog.Number(r.MaxPrice) }));
                    break;
                case RequestKind.ReserveCheapest:
                    calls.AddRange(Matching(r.MaxPrice).Select(e => (get, new JsonObject { ["name"] = e.Name })));
                    calls.Add((reserve, new JsonObject { ["name"] = Cheapest(r.MaxPrice).Name, ["quantity"] = r.Quantity }));
                    break;
            }
        }

        return calls;
    }

    /// <summary>
    /// The rubric as JSON: <c>success_criteria</c> (the answer of each request, the reservations left behind),
    /// <c>expected_tools</c>, <c>checkpoints</c> (the essential calls, in order), and the injected failure (null when none)
    /// that the trajectory must recover from by retrying the same call.
    /// </summary>
    public string RubricJson()
    {
        var checkpoints = new JsonArray(PlannedCalls().Where(c => c.Tool != BuiltinTools.CalculatorSpec.Name)
            .Select(c => (JsonNode?)new JsonObject { ["tool"] = c.Tool, ["arguments"] = c.Arguments.DeepClone() }).ToArray());
        return new JsonObject
        {
            ["judge"] = "rubric",
            ["success_criteria"] = new JsonObject
            {
                ["answers"] = new JsonArray(ExpectedAnswers().Select(a => (JsonNode?)JsonValue.Create(a)).ToArray()),
                ["reservations"] = new JsonArray(ExpectedReservations()
                    .Select(r => (JsonNode?)new JsonObject { ["name"] = r.Name, ["quantity"] = r.Quantity }).ToArray()),
            },
            ["expected_tools"] = new JsonArray(PlannedCalls().Select(c => c.Tool).Distinct().Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
            ["checkpoints"] = checkpoints,
            ["injected_failure"] = Failure is null ? null : new JsonObject { ["call"] = Failure.Call, ["kind"] = Failure.Kind },
            ["recovery"] = "every injected failure is followed by a retry of the same call",
        }.ToJsonString();
    }

    public IEnumerable<SimEntity> Matching(decimal maxPrice) => Initial.Entities.Where(e => e.Price <= maxPrice);

    public SimEntity Cheapest(decimal maxPrice) => Matching(maxPrice).MinBy(e => e.Price)!;

    public static string CostExpression(AgenticRequest r, decimal price) =>
        $"{r.Quantity.ToString(CultureInfo.InvariantCulture)} * {Expression.Format(price)}";

    private string CostExpression(AgenticRequest r) => CostExpression(r, Initial.Find(r.Target)!.Price);

    private string Expected(AgenticRequest r)
    {
        var e = Initial.Find(r.Target);
        int reservation = Requests.TakeWhile(x => x != r).Count(x => x.Kind is RequestKind.Reserve or RequestKind.ReserveCheapest);
        return r.Kind switch
        {
            RequestKind.Price => Expression.Format(e!.Price),
            RequestKind.Stock => e!.Stock.ToString(CultureInfo.InvariantCulture),
            RequestKind.Cost => Expression.Format(r.Quantity * e!.Price),
            RequestKind.Search => string.Join(", ", Matching(r.MaxPrice).Select(m => m.Name)),
            RequestKind.Attribute => e!.Attribute,
            _ => "R-" + (SimTable.FirstReservation + reservation).ToString(CultureInfo.InvariantCulture),
        };
    }
}
