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

    /// <summary>A span that must hold at least <paramref name="need"/> elements.</summary>
    public static void Length(int actual, long need, string name, string shape)
    {
        if (actual < need)
        {
            throw new ArgumentException($"{name} has {actual} elements but shape {shape} needs {need}", name);
        }
    }

    /// <summary>A row-major strided matrix view [rows, cols] with leading dimension ld.</summary>
    public static void Matrix(int actual, int rows, int cols, int ld, string name)
    {
        NonNegative(rows, name + ".rows");
        NonNegative(cols, name + ".cols");
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
