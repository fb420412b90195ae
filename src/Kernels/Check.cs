namespace K2RL.Kernels;

/// <summary>Argument checks shared by every kernel: one place builds the messages, so they all name shapes alike.</summary>
internal static class Check
{
    public static void NonNegative(int value, string name)
    {
        if (value < 0)
        {
            throw new ArgumentException($"{name} must be >= 0, got {value}", name);
        }
    }

    /// <summary>
    /// A span that must hold at least <paramref name="need"/> elements, for a tensor of shape [d0] or [d0, d1]
    /// (d1 &lt; 0: one axis). The message is built only on failure: kernels run in hot loops that must not allocate.
    /// </summary>
    public static void Length(int actual, long need, string name, int d0, int d1 = -1)
    {
        if (actual < need)
        {
            string shape = d1 < 0 ? $"[{d0}]" : $"[{d0}, {d1}]";
            throw new ArgumentException($"{name} has {actual} elements but shape {shape} needs {need}", name);
        }
    }

    /// <summary>A row-major strided matrix view [rows, cols] with leading dimension ld.</summary>
    public static void Matrix(int actual, int rows, int cols, int ld, string name)
    {
        if (rows < 0 || cols < 0)
        {
            throw new ArgumentException($"{name}: shape [{rows}, {cols}] has a negative extent", name);
        }

        if (ld < cols)
        {
            throw new ArgumentException($"{name}: leading dimension {ld} < cols {cols} for shape [{rows}, {cols}]", name);
        }

        long need = rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (actual < need)
        {
            throw new ArgumentException(
                $"{name} has {actual} elements but a [{rows}, {cols}] view with ld {ld} needs {need}", name);
        }
    }
}
