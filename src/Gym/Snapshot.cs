using System.Text;
using K2RL.Common;

namespace K2RL.Gym;

/// <summary>Snapshot bytes that cannot be restored: wrong magic, unknown version, another environment, truncated.</summary>
public sealed class SnapshotException : K2Exception
{
    public SnapshotException(string message) : base(message)
    {
    }

    public SnapshotException(string message, Exception inner) : base(message, inner)
    {
    }
}

/// <summary>
/// Writes an environment snapshot: the header (magic <c>K2GS</c>, format version, environment name) then fields
/// in a fixed order. Little-endian, strings as UTF-8 with a length prefix.
/// </summary>
public sealed class SnapshotWriter
{
    /// <summary>"K2GS" as a little-endian u32.</summary>
    public const uint Magic = 0x5347324B;

    /// <summary>The header version. Bump it when the header changes; environments version their own payload.</summary>
    public const ushort FormatVersion = 1;

    private readonly MemoryStream stream = new();
    private readonly BinaryWriter writer;

    public SnapshotWriter(string environmentName, ushort payloadVersion)
    {
        writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(FormatVersion);
        writer.Write(environmentName);
        writer.Write(payloadVersion);
    }

    public SnapshotWriter Write(long v)
    {
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(int v)
    {
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(double v)
    {
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(bool v)
    {
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(string v)
    {
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(byte[] v)
    {
        writer.Write(v.Length);
        writer.Write(v);
        return this;
    }

    public SnapshotWriter Write(IReadOnlyDictionary<string, string> map)
    {
        writer.Write(map.Count);
        foreach (var (k, v) in map.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            writer.Write(k);
            writer.Write(v);
        }

        return this;
    }

    public byte[] ToArray()
    {
        writer.Flush();
        return stream.ToArray();
    }
}

/// <summary>Reads what <see cref="SnapshotWriter"/> wrote; every failure is a <see cref="SnapshotException"/>.</summary>
public sealed class SnapshotReader
{
    private readonly BinaryReader reader;

    public SnapshotReader(ReadOnlyMemory<byte> bytes, string expectedEnvironment)
    {
        reader = new BinaryReader(new MemoryStream(bytes.ToArray(), writable: false), Encoding.UTF8);
        Guard(() =>
        {
            uint magic = reader.ReadUInt32();
            if (magic != SnapshotWriter.Magic)
            {
                throw new SnapshotException($"not an environment snapshot (magic 0x{magic:X8}, expected 0x{SnapshotWriter.Magic:X8})");
            }

            ushort version = reader.ReadUInt16();
            if (version != SnapshotWriter.FormatVersion)
            {
                throw new SnapshotException($"snapshot format version {version} is not supported (this build reads {SnapshotWriter.FormatVersion})");
            }

            string name = reader.ReadString();
            if (name != expectedEnvironment)
            {
                throw new SnapshotException($"snapshot is of environment '{name}', not '{expectedEnvironment}'");
            }

            PayloadVersion = reader.ReadUInt16();
            return 0;
        });
    }

    /// <summary>The version the environment wrote its payload with.</summary>
    public ushort PayloadVersion { get; private set; }

    public long ReadInt64() => Guard(reader.ReadInt64);

    public int ReadInt32() => Guard(reader.ReadInt32);

    public double ReadDouble() => Guard(reader.ReadDouble);

    public bool ReadBoolean() => Guard(reader.ReadBoolean);

    public string ReadString() => Guard(reader.ReadString);

    public byte[] ReadBytes() => Guard(() =>
    {
        int n = reader.ReadInt32();
        if (n < 0 || n > reader.BaseStream.Length - reader.BaseStream.Position)
        {
            throw new SnapshotException($"snapshot byte field of length {n} runs past the end");
        }

        return reader.ReadBytes(n);
    });

    public Dictionary<string, string> ReadMap() => Guard(() =>
    {
        int n = CheckCount(reader.ReadInt32());
        var map = new Dictionary<string, string>(n);
        for (int i = 0; i < n; i++)
        {
            map[reader.ReadString()] = reader.ReadString();
        }

        return map;
    });

    /// <summary>Throws unless every byte was consumed (a longer snapshot is from another layout).</summary>
    public void EnsureEnd()
    {
        if (reader.BaseStream.Position != reader.BaseStream.Length)
        {
            throw new SnapshotException($"{reader.BaseStream.Length - reader.BaseStream.Position} unread bytes at the end of the snapshot");
        }
    }

    private int CheckCount(int n) =>
        n < 0 || n > reader.BaseStream.Length ? throw new SnapshotException($"snapshot count {n} is impossible") : n;

    private static T Guard<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (EndOfStreamException e)
        {
            throw new SnapshotException("snapshot is truncated", e);
        }
        catch (IOException e)
        {
            throw new SnapshotException("snapshot is unreadable: " + e.Message, e);
        }
    }
}
