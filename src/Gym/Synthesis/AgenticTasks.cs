namespace K2RL.Gym.Synthesis;

/// <summary>
/// Draws agentic tasks from a seed: a domain of the catalog, its table (3–4 records), an agent (tool subset and system
/// prompt) and the requests. Difficulty 1: one lookup (price or stock). 2: a lookup and an action (total cost with the
/// real calculator, or a reservation). 3: two requests in a row from the simulated user (search, then reserve the
/// cheapest match; or reserve, then a question the agent answers from what it already looked up). Deterministic: the
/// same catalog, seed, difficulty and options give the same task.
/// </summary>
public static class AgenticTasks
{
    public const int MaxDifficulty = 3;

    private static readonly string[] Syllables =
        ["zor", "bel", "kin", "tra", "vo", "lum", "ska", "rip", "dex", "mo", "qua", "fen", "tul", "gri", "sna"];

    public static AgenticTask Create(AgenticCatalog catalog, long seed, int difficulty, AgenticOptions options)
    {
        difficulty = Math.Clamp(difficulty, 1, MaxDifficulty);
        var rng = new GymRandom(GymRandom.Mix(seed, (ulong)difficulty, "agentic"));
        var domain = rng.Pick(catalog.Domains);
        var table = Table(ref rng, domain);
        var e = rng.Pick(table.Entities);
        string noun = domain.Noun;
        int quantity = rng.Next(1, 4);
        e.Stock = Math.Max(e.Stock, quantity + rng.Next(0, 3));
        List<AgenticRequest> requests;
        List<SimToolRole> roles;
        bool calculator = false;
        switch (difficulty, rng.Next(0, 2))
        {
            case (1, 0):
                requests = [new(RequestKind.Price, $"What is the price of the {noun} {e.Name}?", e.Name)];
                roles = [SimToolRole.Get];
                break;
            case (1, _):
                requests = [new(RequestKind.Stock, $"How many of the {noun} {e.Name} are in stock?", e.Name)];
                roles = [SimToolRole.Get];
                break;
            case (2, 0):
                requests = [new(RequestKind.Cost, $"What do {quantity} of the {noun} {e.Name} cost in total?", e.Name, quantity)];
                roles = [SimToolRole.Get];
                calculator = true;
                break;
            case (2, _):
                requests = [new(RequestKind.Reserve, $"Reserve {quantity} of the {noun} {e.Name}.", e.Name, quantity)];
                roles = [SimToolRole.Get, SimToolRole.Reserve];
                break;
            case (_, 0):
                decimal max = SearchBound(ref rng, table, quantity);
                requests =
                [
                    new(RequestKind.Search, $"Which {noun}s cost at most {Expression.Format(max)}?", MaxPrice: max),
                    new(RequestKind.ReserveCheapest, $"Reserve {quantity} of the cheapest one.", Quantity: quantity, MaxPrice: max),
                ];
                roles = [SimToolRole.Search, SimToolRole.Get, SimToolRole.Reserve];
                break;
            default:
                requests =
                [
                    new(RequestKind.Reserve, $"Reserve {quantity} of the {noun} {e.Name}.", e.Name, quantity),
                    new(RequestKind.Attribute, $"Thanks. What is the {domain.Attribute} of {e.Name}?", e.Name),
                ];
                roles = [SimToolRole.Get, SimToolRole.Reserve];
                break;
        }

        var task = new AgenticTask
        {
            Id = $"{domain.Category}/{domain.Name}|{string.Join(";", table.Entities.Select(x => $"{x.Name}:{Expression.Format(x.Price)}:{x.Stock}:{x.Attribute}"))}|" +
                 string.Join("|", requests.Select(r => r.Text)),
            Difficulty = difficulty,
            Domain = domain,
            Tools = roles.Select(domain.Tool).ToList(),
            Calculator = calculator,
            SystemPrompt = $"You are the {domain.Name.Replace('_', ' ')} assistant. Use the tools; retry a call that fails or returns a wrong type. " +
                           "End each reply with 'Answer: <answer>'.",
            Requests = requests,
            Initial = table,
        };
        return task with { Failure = DrawFailure(ref rng, task, options) };
    }

    /// <summary>3–4 records with distinct names and distinct prices (1.00–99.99), stock 0–9, an attribute value each.</summary>
    private static SimTable Table(ref GymRandom rng, SimDomain domain)
    {
        int n = rng.Next(3, 5);
        var entities = new List<SimEntity>();
        while (entities.Count < n)
        {
            string name = rng.Pick(Syllables) + rng.Pick(Syllables) + (rng.Next(0, 2) == 0 ? rng.Pick(Syllables) : "");
            decimal price = rng.Next(100, 10_000) / 100m;
            if (entities.Any(x => x.Name == name || x.Price == price))
            {
                continue;
            }

            entities.Add(new SimEntity(name, price, rng.Next(0, 10), rng.Pick(domain.AttributeValues)));
        }

        return new SimTable(entities);
    }

    /// <summary>A price bound that 2–3 records meet; the cheapest of them gets enough stock for the reservation.</summary>
    private static decimal SearchBound(ref GymRandom rng, SimTable table, int quantity)
    {
        var byPrice = table.Entities.OrderBy(x => x.Price).ToList();
        int k = rng.Next(2, Math.Min(4, byPrice.Count));
        decimal bound = Math.Ceiling(byPrice[k - 1].Price);
        if (bound >= byPrice[k].Price)
        {
            bound = byPrice[k - 1].Price;
        }

        byPrice[0].Stock = Math.Max(byPrice[0].Stock, quantity);
        return bound;
    }

    /// <summary>With probability <see cref="AgenticOptions.FailureShare"/>, one planned lookup or search call fails.</summary>
    private static InjectedFailure? DrawFailure(ref GymRandom rng, AgenticTask task, AgenticOptions options)
    {
        if (options.FailureKinds.Count == 0 || rng.NextDouble() >= options.FailureShare)
        {
            return null;
        }

        var reads = task.PlannedCalls().Select((c, i) => (c.Tool, i))
            .Where(c => task.Tools.Any(t => t.Spec.Name == c.Tool && t.Role != SimToolRole.Reserve)).Select(c => c.i).ToList();
        return reads.Count == 0 ? null : new InjectedFailure(rng.Pick(reads), rng.Pick(options.FailureKinds));
    }
}
