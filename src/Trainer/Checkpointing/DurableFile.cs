using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace K2RL.Trainer.Checkpointing;

/// <summary>Crash-safe file primitives: write-then-fsync, fsync of a directory, atomic rename, SHA-256.</summary>
public static class DurableFile
{
    /// <summary>Writes through <paramref name="write"/> and fsyncs the file before returning.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        write(fs);
        fs.Flush(flushToDisk: true);
    }

    /// <summary>fsync of a file written by someone else.</summary>
    public static void Fsync(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Flush(flushToDisk: true);
    }

    public static void WriteText(string path, string text) =>
        Write(path, s =>
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(text);
            s.Write(bytes);
        });

    /// <summary>Writes <paramref name="path"/> via a temporary sibling and an atomic rename.</summary>
    public static void ReplaceText(string path, string text)
    {
        string tmp = path + ".tmp";
        WriteText(tmp, text);
        File.Move(tmp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>fsync of a directory, so renames inside it survive a power cut (no-op where unsupported).</summary>
    public static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return;
        }

        int fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0)
        {
            return;
        }

        try
        {
            _ = Fsync(fd);
        }
        finally
        {
            _ = Close(fd);
        }
    }

    public static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    // Directory fsync has no managed API; these three libc calls are all it takes (no unsafe code needed).
    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int Fsync(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);
}
