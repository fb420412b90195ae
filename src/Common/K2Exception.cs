namespace K2RL.Common;

/// <summary>
/// Errors a user can act on: a malformed config, a corrupted file, a broken peer. The message names
/// what was wrong (file, key, line, tensor, endpoint). The CLI prints it without a stack trace.
/// </summary>
public class K2Exception : Exception
{
    public K2Exception(string message) : base(message)
    {
    }

    public K2Exception(string message, Exception inner) : base(message, inner)
    {
    }
}

/// <summary>A configuration or job file that cannot be used as written.</summary>
public sealed class ConfigException : K2Exception
{
    public ConfigException(string message) : base(message)
    {
    }

    public ConfigException(string message, Exception inner) : base(message, inner)
    {
    }
}

/// <summary>A file on disk (checkpoint, tokenizer, corpus) that is malformed or does not match what refers to it.</summary>
public sealed class CorruptFileException : K2Exception
{
    public CorruptFileException(string path, string what) : base($"{path}: {what}")
    {
        Path = path;
    }

    public string Path { get; }
}
