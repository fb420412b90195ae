using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace K2RL.Model.IO;

/// <summary>
/// Writes a file so that a reader (or a crash) sees either the old file or the complete new one: the
/// content goes to a temporary file in the same directory, is flushed to disk, renamed over the target,
/// and the directory entry is flushed too (on Unix). Temporaries are named <c>.NAME.tmp-PID-GUID</c> (and a replaced
/// folder <c>.NAME.old-PID-GUID</c>), so that once their writer is dead they can be told apart and deleted
/// (<see cref="DeleteAbandoned"/>).
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = System.IO.Path.Combine(dir,
            $".{System.IO.Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        FlushDirectory(dir);
    }

    /// <summary>
    /// Makes directory <paramref name="dir"/> appear complete or not at all (a run's <c>checkpoints/step-N/</c>):
    /// <paramref name="fill"/> writes into a temporary sibling directory, every file in it is flushed to disk, then
    /// the directory is renamed into place and the parent flushed. An existing <paramref name="dir"/> is an error
    /// unless <paramref name="replace"/>, in which case it is moved aside first and deleted after the rename.
    /// </summary>
    public static void WriteDirectory(string dir, Action<string> fill, bool replace = false)
    {
        string full = System.IO.Path.GetFullPath(dir).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        string parent = System.IO.Path.GetDirectoryName(full)!;
        string name = System.IO.Path.GetFileName(full);
        if (Directory.Exists(full) && !replace)
        {
            throw new K2RL.Common.K2Exception($"{full}: already exists (pass replace to overwrite it)");
        }

        Directory.CreateDirectory(parent);
        string temp = System.IO.Path.Combine(parent, $".{name}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            foreach (string file in Directory.EnumerateFiles(temp, "*", SearchOption.AllDirectories))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }

            foreach (string sub in Directory.EnumerateDirectories(temp, "*", SearchOption.AllDirectories).Append(temp))
            {
                FlushDirectory(sub);
            }

            string? aside = null;
            if (Directory.Exists(full))
            {
                aside = System.IO.Path.Combine(parent, $".{name}.old-{Environment.ProcessId}-{Guid.NewGuid():N}");
                Directory.Move(full, aside);
            }

            Directory.Move(temp, full);
            FlushDirectory(parent);
            if (aside is not null)
            {
                Directory.Delete(aside, recursive: true);
            }
        }
        catch
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }

            throw;
        }
    }

    /// <summary>
    /// Deletes the temporaries in <paramref name="dir"/> (not below it) whose writer is no longer running: what a
    /// process killed in the middle of <see cref="Write"/> or <see cref="WriteDirectory"/> left behind. A live
    /// process's temporaries are never touched (a pid that is running, even reused by another program, keeps them).
    /// Returns the names deleted.
    /// </summary>
    public static IReadOnlyList<string> DeleteAbandoned(string dir)
    {
        var deleted = new List<string>();
        if (!Directory.Exists(dir))
        {
            return deleted;
        }

        foreach (string entry in Directory.EnumerateFileSystemEntries(dir, ".*"))
        {
            string name = System.IO.Path.GetFileName(entry);
            var m = TemporaryName().Match(name);
            if (!m.Success || !int.TryParse(m.Groups["pid"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ||
                IsRunning(pid))
            {
                continue;
            }

            try
            {
                if (Directory.Exists(entry))
                {
                    Directory.Delete(entry, recursive: true);
                }
                else
                {
                    File.Delete(entry);
                }

                deleted.Add(name);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another process got there first, or it is not ours to delete.
            }
        }

        return deleted;
    }

    [GeneratedRegex(@"^\..+\.(tmp|old)-(?<pid>[0-9]+)-[0-9a-f]{32}$", RegexOptions.CultureInvariant)]
    private static partial Regex TemporaryName();

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId)
        {
            return true;
        }

        if (OperatingSystem.IsLinux())
        {
            return Directory.Exists("/proc/" + pid.ToString(CultureInfo.InvariantCulture));
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s =>
        {
            using var writer = new StreamWriter(s, new System.Text.UTF8Encoding(false), 1 << 12, leaveOpen: true);
            writer.Write(text);
        });

    /// <summary>Flushes a directory's entries (after a rename) to disk; a no-op where the OS cannot.</summary>
    public static void FlushDirectory(string dir)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            int fd = Posix.open(dir, 0 /* O_RDONLY */);
            if (fd < 0)
            {
                return;
            }

            _ = Posix.fsync(fd);
            _ = Posix.close(fd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to call: the rename itself is still atomic, only its durability is left to the OS.
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static class Posix
    {
        [DllImport("libc", SetLastError = true)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
