using System.Reflection;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym.Critic;
using K2RL.Gym.Sandbox;
using K2RL.Gym.Tasks;

namespace K2RL.Gym;

/// <summary>Shared services an environment factory may use (the code sandbox, the registry itself).</summary>
public sealed class GymServices
{
    private readonly Lazy<ISandbox> sandbox;

    public GymServices(GymRegistry registry, Func<ISandbox>? sandboxFactory = null)
    {
        Registry = registry;
        sandbox = new Lazy<ISandbox>(sandboxFactory ?? (() => new BubblewrapSandbox()));
    }

    public GymRegistry Registry { get; }

    /// <summary>The sandbox for untrusted programs, made on first use.</summary>
    public ISandbox Sandbox => sandbox.Value;
}

/// <summary>
/// A registered environment: its name, a one-line description, a factory, its task generator if it has one, and
/// whether its reward comes from a verifier (false: an RL job scores it with the self-critique rubric reward).
/// </summary>
public sealed record EnvironmentEntry(
    string Name,
    string Description,
    Func<GymServices, IEnvironment> Create,
    ITaskGenerator? Generator = null,
    IReadOnlyList<ToolSpec>? Tools = null,
    bool HasVerifier = true);

/// <summary>
/// Everything the Gym can name: environments, verifiers, judges and rubrics. <see cref="CreateDefault"/> holds the
/// built-ins; <see cref="LoadPlugin"/> adds a user's assembly; <see cref="LoadRubrics"/> adds rubric files. Names are
/// unique per kind; registering a taken name throws.
/// </summary>
public sealed class GymRegistry
{
    private readonly Dictionary<string, EnvironmentEntry> environments = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<GymServices, IVerifier>> verifiers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<IReadOnlyDictionary<string, string>, IJudge>> judges = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Rubric> rubrics = new(StringComparer.Ordinal);

    public GymRegistry(Func<ISandbox>? sandboxFactory = null)
    {
        Services = new GymServices(this, sandboxFactory);
    }

    public GymServices Services { get; }

    public IReadOnlyList<EnvironmentEntry> Environments => environments.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();

    public IReadOnlyCollection<string> Verifiers => verifiers.Keys.Order(StringComparer.Ordinal).ToList();

    public IReadOnlyCollection<string> Judges => judges.Keys.Order(StringComparer.Ordinal).ToList();

    public IReadOnlyList<Rubric> Rubrics => rubrics.Values.OrderBy(r => r.Kind).ThenBy(r => r.Name, StringComparer.Ordinal).ToList();

    /// <summary>The task generators of the registered environments, by task kind (for synthetic corpora).</summary>
    public IReadOnlyDictionary<string, ITaskGenerator> Generators =>
        environments.Values.Where(e => e.Generator is not null).ToDictionary(e => e.Generator!.Kind, e => e.Generator!);

    /// <summary>The built-in environments, verifiers and judges (rubrics come from files: <see cref="LoadRubrics"/>).</summary>
    public static GymRegistry CreateDefault(Func<ISandbox>? sandboxFactory = null)
    {
        var r = new GymRegistry(sandboxFactory);
        BuiltinEnvironments.Register(r);
        return r;
    }

    public GymRegistry AddEnvironment(EnvironmentEntry entry)
    {
        if (!environments.TryAdd(entry.Name, entry))
        {
            throw new ConfigException($"environment '{entry.Name}' is already registered");
        }

        return this;
    }

    public GymRegistry AddEnvironment(string name, string description, Func<GymServices, IEnvironment> create,
        ITaskGenerator? generator = null) => AddEnvironment(new EnvironmentEntry(name, description, create, generator));

    public GymRegistry AddVerifier(string name, Func<GymServices, IVerifier> create)
    {
        if (!verifiers.TryAdd(name, create))
        {
            throw new ConfigException($"verifier '{name}' is already registered");
        }

        return this;
    }

    public GymRegistry AddJudge(string name, Func<IReadOnlyDictionary<string, string>, IJudge> create)
    {
        if (!judges.TryAdd(name, create))
        {
            throw new ConfigException($"judge '{name}' is already registered");
        }

        return this;
    }

    public GymRegistry AddRubric(Rubric rubric)
    {
        if (rubrics.TryGetValue(rubric.Name, out var earlier))
        {
            throw new ConfigException($"{rubric.Source}: rubric '{rubric.Name}' is already defined at {earlier.Source}");
        }

        rubrics[rubric.Name] = rubric;
        return this;
    }

    /// <summary>Adds every rubric file in a directory (see <see cref="RubricLoader"/>).</summary>
    public GymRegistry LoadRubrics(string directory)
    {
        foreach (var r in RubricLoader.LoadDirectory(directory))
        {
            AddRubric(r);
        }

        return this;
    }

    public EnvironmentEntry GetEnvironment(string name) =>
        environments.TryGetValue(name, out var e)
            ? e
            : throw new ConfigException($"unknown environment '{name}' (registered: {string.Join(", ", environments.Keys.Order(StringComparer.Ordinal))})");

    public IEnvironment CreateEnvironment(string name) => GetEnvironment(name).Create(Services);

    public IVerifier CreateVerifier(string name) =>
        verifiers.TryGetValue(name, out var f)
            ? f(Services)
            : throw new ConfigException($"unknown verifier '{name}' (registered: {string.Join(", ", Verifiers)})");

    public IJudge CreateJudge(string name, IReadOnlyDictionary<string, string>? options = null) =>
        judges.TryGetValue(name, out var f)
            ? f(options ?? ResetOptions.EmptyMap)
            : throw new ConfigException($"unknown judge '{name}' (registered: {string.Join(", ", Judges)})");

    /// <summary>
    /// Loads a user's assembly and registers what it contributes: every <see cref="IGymPlugin"/> it defines is
    /// constructed and called, and every <see cref="IEnvironment"/> class marked <see cref="GymEnvironmentAttribute"/>
    /// is registered (constructed with a <see cref="GymServices"/> argument if it takes one, else without).
    /// </summary>
    public Assembly LoadPlugin(string path) => PluginLoader.Load(this, path);
}

/// <summary>Implemented by a plugin assembly to register its environments, verifiers, judges or rubrics.</summary>
public interface IGymPlugin
{
    void Register(GymRegistry registry);
}

/// <summary>Marks an <see cref="IEnvironment"/> class for registration when its assembly is loaded as a plugin.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class GymEnvironmentAttribute(string name, string description) : Attribute
{
    public string Name => name;

    public string Description => description;
}
