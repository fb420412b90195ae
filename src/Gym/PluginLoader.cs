using System.Reflection;
using System.Runtime.Loader;
using K2RL.Common;

namespace K2RL.Gym;

/// <summary>
/// Loads plugin assemblies in their own <see cref="AssemblyLoadContext"/> (so their private dependencies resolve from
/// their folder) while sharing K2RL's assemblies with the host (so <see cref="IEnvironment"/> is one type).
/// </summary>
internal static class PluginLoader
{
    public static Assembly Load(GymRegistry registry, string path)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new ConfigException($"{path}: plugin assembly not found");
        }

        Assembly assembly;
        try
        {
            assembly = new PluginLoadContext(full).LoadFromAssemblyPath(full);
        }
        catch (BadImageFormatException e)
        {
            throw new ConfigException($"{path}: not a .NET assembly ({e.Message})", e);
        }

        Type[] types;
        try
        {
            types = assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException e)
        {
            string first = e.LoaderExceptions.FirstOrDefault(x => x is not null)?.Message ?? e.Message;
            throw new ConfigException($"{path}: cannot load its types: {first}", e);
        }

        int found = 0;
        foreach (var type in types.Where(t => t is { IsAbstract: false, IsInterface: false }).OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            if (typeof(IGymPlugin).IsAssignableFrom(type))
            {
                var plugin = (IGymPlugin)Construct(type, null, path);
                plugin.Register(registry);
                found++;
            }

            if (type.GetCustomAttribute<GymEnvironmentAttribute>() is { } attr)
            {
                if (!typeof(IEnvironment).IsAssignableFrom(type))
                {
                    throw new ConfigException($"{path}: {type.FullName} has [GymEnvironment] but does not implement IEnvironment");
                }

                var t = type;
                registry.AddEnvironment(attr.Name, attr.Description, services => (IEnvironment)Construct(t, services, path));
                found++;
            }
        }

        if (found == 0)
        {
            throw new ConfigException($"{path}: defines no IGymPlugin and no [GymEnvironment] class");
        }

        return assembly;
    }

    private static object Construct(Type type, GymServices? services, string path)
    {
        try
        {
            if (services is not null && type.GetConstructor([typeof(GymServices)]) is { } withServices)
            {
                return withServices.Invoke([services]);
            }

            return Activator.CreateInstance(type) ??
                   throw new ConfigException($"{path}: cannot construct {type.FullName}");
        }
        catch (MissingMethodException e)
        {
            throw new ConfigException($"{path}: {type.FullName} needs a public constructor taking nothing or GymServices", e);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw new ConfigException($"{path}: constructing {type.FullName} failed: {e.InnerException.Message}", e.InnerException);
        }
    }

    private sealed class PluginLoadContext(string mainPath) : AssemblyLoadContext(Path.GetFileNameWithoutExtension(mainPath))
    {
        private readonly AssemblyDependencyResolver resolver = new(mainPath);

        protected override Assembly? Load(AssemblyName name)
        {
            // Assemblies the host already has (K2RL.*, the framework, YamlDotNet...) come from the default context.
            var shared = Default.Assemblies.FirstOrDefault(a => a.GetName().Name == name.Name);
            if (shared is not null)
            {
                return shared;
            }

            if (name.Name is { } n && n.StartsWith("K2RL.", StringComparison.Ordinal))
            {
                return null;
            }

            string? path = resolver.ResolveAssemblyToPath(name);
            return path is null ? null : LoadFromAssemblyPath(path);
        }
    }
}
