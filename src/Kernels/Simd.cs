using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

/// <summary>
/// The vector operations the SIMD kernels are written against, so that one generic body serves every width.
/// The JIT specializes a generic method per struct type argument, so <c>TOps.Fma(...)</c> compiles to the
/// instruction itself; the accumulators are plain <c>Vector512/256/128&lt;float&gt;</c> locals.
/// <see cref="Simd512"/>, <see cref="Simd256"/> and <see cref="Simd128"/> repeat one another line for line on purpose
/// (a repeated-code scan lists them): each is the same operation list over its own width's intrinsics, which is
/// what lets every kernel body be written once.
/// </summary>
internal interface ISimd<TV>
    where TV : struct
{
    static abstract int Count { get; }

    static abstract TV Zero { get; }

    static abstract TV Splat(float x);

    static abstract TV Load(ref readonly float src, nuint offset);

    static abstract void Store(TV v, ref float dst, nuint offset);

    static abstract TV Add(TV a, TV b);

    static abstract TV Sub(TV a, TV b);

    static abstract TV Mul(TV a, TV b);

    static abstract TV Div(TV a, TV b);

    /// <summary>a * b + c, fused (one rounding).</summary>
    static abstract TV Fma(TV a, TV b, TV c);

    static abstract TV Max(TV a, TV b);

    static abstract TV Exp(TV x);

    /// <summary>Swaps adjacent lanes: (x0, x1, x2, x3, ...) → (x1, x0, x3, x2, ...).</summary>
    static abstract TV SwapPairs(TV x);

    /// <summary>Lanes [0, keepFrom) set to zero, the rest kept (masks the overlapped head of a last vector).</summary>
    static abstract TV ZeroBelow(TV x, int keepFrom);

    static abstract float Sum(TV x);

    static abstract float MaxAcross(TV x);

    /// <summary>True when any lane of x is greater than t.</summary>
    static abstract bool AnyGreater(TV x, float t);

    /// <summary>
    /// Count pairs of bf16 values at src + offset (2·Count ushorts), widened exactly: lo = the first of each pair,
    /// hi = the second (the layout of <see cref="SmallGemm.PackBf16Row"/>).
    /// </summary>
    static abstract void LoadBf16Pairs(ref readonly ushort src, nuint offset, out TV lo, out TV hi);
}

internal readonly struct Simd512 : ISimd<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Splat(float x) => Vector512.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(ref readonly float src, nuint offset) => Vector512.LoadUnsafe(in src, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, ref float dst, nuint offset) => v.StoreUnsafe(ref dst, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Div(Vector512<float> a, Vector512<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c)
        => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SwapPairs(Vector512<float> x)
        => Vector512.Shuffle(x, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ZeroBelow(Vector512<float> x, int keepFrom)
        => Vector512.ConditionalSelect(
            Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(keepFrom)).AsSingle(), x,
            Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> x) => Vector512.Sum(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> x) => Simd256.MaxAcross(Vector256.Max(x.GetLower(), x.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyGreater(Vector512<float> x, float t) => Vector512.GreaterThanAny(x, Vector512.Create(t));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ref readonly ushort src, nuint offset, out Vector512<float> lo, out Vector512<float> hi)
    {
        var raw = Vector512.LoadUnsafe(ref Unsafe.As<ushort, uint>(ref Unsafe.Add(ref Unsafe.AsRef(in src), offset)));
        lo = Vector512.ShiftLeft(raw, 16).AsSingle();
        hi = (raw & Vector512.Create(0xFFFF0000u)).AsSingle();
    }
}

internal readonly struct Simd256 : ISimd<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Splat(float x) => Vector256.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(ref readonly float src, nuint offset) => Vector256.LoadUnsafe(in src, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, ref float dst, nuint offset) => v.StoreUnsafe(ref dst, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Div(Vector256<float> a, Vector256<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c)
        => Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => Vector256.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SwapPairs(Vector256<float> x)
        => Vector256.Shuffle(x, Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ZeroBelow(Vector256<float> x, int keepFrom)
        => Vector256.ConditionalSelect(
            Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(keepFrom)).AsSingle(), x,
            Vector256<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> x) => Vector256.Sum(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> x) => Simd128.MaxAcross(Vector128.Max(x.GetLower(), x.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyGreater(Vector256<float> x, float t) => Vector256.GreaterThanAny(x, Vector256.Create(t));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ref readonly ushort src, nuint offset, out Vector256<float> lo, out Vector256<float> hi)
    {
        var raw = Vector256.LoadUnsafe(ref Unsafe.As<ushort, uint>(ref Unsafe.Add(ref Unsafe.AsRef(in src), offset)));
        lo = Vector256.ShiftLeft(raw, 16).AsSingle();
        hi = (raw & Vector256.Create(0xFFFF0000u)).AsSingle();
    }
}

internal readonly struct Simd128 : ISimd<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;

    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Splat(float x) => Vector128.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(ref readonly float src, nuint offset) => Vector128.LoadUnsafe(in src, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector128<float> v, ref float dst, nuint offset) => v.StoreUnsafe(ref dst, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sub(Vector128<float> a, Vector128<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Mul(Vector128<float> a, Vector128<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Div(Vector128<float> a, Vector128<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c)
        => Vector128.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x) => Vector128.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SwapPairs(Vector128<float> x) => Vector128.Shuffle(x, Vector128.Create(1, 0, 3, 2));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ZeroBelow(Vector128<float> x, int keepFrom)
        => Vector128.ConditionalSelect(
            Vector128.GreaterThanOrEqual(Vector128<int>.Indices, Vector128.Create(keepFrom)).AsSingle(), x,
            Vector128<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> x) => Vector128.Sum(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> x)
    {
        float m = x.GetElement(0);
        for (int i = 1; i < Vector128<float>.Count; i++)
        {
            m = MathF.Max(m, x.GetElement(i));
        }

        return m;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyGreater(Vector128<float> x, float t) => Vector128.GreaterThanAny(x, Vector128.Create(t));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBf16Pairs(ref readonly ushort src, nuint offset, out Vector128<float> lo, out Vector128<float> hi)
    {
        var raw = Vector128.LoadUnsafe(ref Unsafe.As<ushort, uint>(ref Unsafe.Add(ref Unsafe.AsRef(in src), offset)));
        lo = Vector128.ShiftLeft(raw, 16).AsSingle();
        hi = (raw & Vector128.Create(0xFFFF0000u)).AsSingle();
    }
}

/// <summary>Which vector width the kernels use: the widest one the hardware accelerates (tests may force one).</summary>
internal enum SimdWidth
{
    Scalar = 0,
    W128 = 128,
    W256 = 256,
    W512 = 512,
}

internal static class SimdSelect
{
    /// <summary>The widest accelerated width on this machine.</summary>
    public static readonly SimdWidth Best =
        Vector512.IsHardwareAccelerated ? SimdWidth.W512
        : Vector256.IsHardwareAccelerated ? SimdWidth.W256
        : Vector128.IsHardwareAccelerated ? SimdWidth.W128
        : SimdWidth.Scalar;

    [ThreadStatic]
    private static SimdWidth? overrideWidth;

    /// <summary>
    /// Tests set this (per calling thread) to run a narrower, or an emulated wider, path; null means <see cref="Best"/>.
    /// GEMM reads it once per call and hands it to its workers.
    /// </summary>
    internal static SimdWidth? Override
    {
        get => overrideWidth;
        set => overrideWidth = value;
    }

    public static SimdWidth Current => Override ?? Best;
}
