using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace K2RL.Kernels;

/// <summary>
/// The checkpoint engine's bucket checksum, built to be computed by the copy that moves the bytes, in the same pass.
/// <para>
/// Definition: read the bytes as little-endian 32-bit words <c>w_p</c> (<c>p</c> = byte offset / 4, a last partial
/// word zero-padded); <c>S = Σ w_p</c> and <c>T = Σ (p + 1)·w_p</c>, both modulo 2⁶⁴; the checksum is a 64-bit mix of
/// <c>(S, T, length)</c>. Each byte adds its own term, so parts of a bucket can be summed in any order and any split,
/// even mid-word: a receiver sums the tensors it copies out as it copies them, and the gaps it skips on their own.
/// </para>
/// <para>
/// Strength: a change of one word changes S; a change of two words that leaves S equal changes T by
/// <c>(p − q)·Δ</c>, never 0 mod 2⁶⁴ for buckets under 16 GB: any one- or two-word corruption (a flipped bit, two
/// swapped words, a truncated or shifted tail) always changes (S, T), and escapes only if the final 128 → 64-bit mix
/// collides (about 2⁻⁶⁴), as other corruption (garbage, a stale or torn bucket) may. Not a defence against a peer
/// forging data.
/// </para>
/// <para>
/// Why not XxHash3 (what the engine used before): hashing a cache-sized piece, then copying it out, reads every byte
/// twice on one thread; the receiver then moved data at ~60 % of memcpy. These sums are two vector adds per 8 words,
/// hidden under the streaming copy's memory traffic. The vector loop runs where AVX2 is present; elsewhere a scalar
/// loop computes the same value.
/// </para>
/// </summary>
public struct WordChecksum
{
    /// <summary>The name a manifest records for this checksum.</summary>
    public const string Kind = "k2-wsum64";

    private ulong sum;
    private ulong weighted;

    /// <summary>The checksum of <paramref name="bytes"/> alone.</summary>
    public static ulong Of(ReadOnlySpan<byte> bytes)
    {
        var c = default(WordChecksum);
        c.Add(bytes, 0);
        return c.Finish(bytes.Length);
    }

    /// <summary>S and T so far (the definition above, before the mix).</summary>
    public readonly (ulong Sum, ulong Weighted) Sums => (sum, weighted);

    /// <summary>The value for a stream of <paramref name="length"/> bytes once every byte of it has been added once.</summary>
    public readonly ulong Finish(long length) => Mix(Mix(sum ^ Mix((ulong)length + 0x9E3779B97F4A7C15UL)) ^ weighted);

    /// <summary>Adds <paramref name="bytes"/>, which sit at byte <paramref name="at"/> of the stream.</summary>
    public unsafe void Add(ReadOnlySpan<byte> bytes, long at)
    {
        int i = Bytes(bytes, at, 0, (int)Math.Min(bytes.Length, (4 - (at & 3)) & 3));
        fixed (byte* s = bytes)
        {
            i += Words(s + i, null, (bytes.Length - i) >> 2, (at + i) >> 2, Store.None);
        }

        Bytes(bytes, at, i, bytes.Length - i);
    }

    /// <summary>
    /// Copies <paramref name="src"/> (at byte <paramref name="at"/> of the stream) into <paramref name="dst"/> and adds it,
    /// reading each byte once; large copies write with streaming stores (fence them, x86's sfence, before another thread
    /// reads <paramref name="dst"/>).
    /// </summary>
    public unsafe void CopyAndAdd(ReadOnlySpan<byte> src, Span<byte> dst, long at)
    {
        if (src.Length != dst.Length)
        {
            throw new ArgumentException($"copy of {src.Length} bytes into {dst.Length}");
        }

        fixed (byte* s = src, d = dst)
        {
            int head = (int)Math.Min(src.Length, (32 - ((long)d & 31)) & 31);
            if (!Vectorized || src.Length < StreamingStores.StreamingMinBytes || ((at + head) & 3) != 0)
            {
                src.CopyTo(dst);
                Add(src, at);
                return;
            }

            src[..head].CopyTo(dst);
            Bytes(src, at, 0, head);
            int words = (src.Length - head) >> 2;
            int done = head + Words(s + head, d + head, words, (at + head) >> 2, Store.Copy);
            src[done..].CopyTo(dst[done..]);
            Bytes(src, at, done, src.Length - done);
        }
    }

    /// <summary>
    /// Widens bf16 <paramref name="src"/> (at byte <paramref name="at"/> of the stream) to fp32 <paramref name="dst"/>
    /// and adds the bf16 bytes, reading each once; large outputs are written with streaming stores.
    /// </summary>
    public unsafe void WidenBf16AndAdd(ReadOnlySpan<ushort> src, Span<float> dst, long at)
    {
        if (src.Length != dst.Length)
        {
            throw new ArgumentException($"widening of {src.Length} values into {dst.Length}");
        }

        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(src);
        fixed (float* d = dst)
        fixed (ushort* s = src)
        {
            int head = (int)Math.Min(src.Length, ((32 - ((long)d & 31)) & 31) / sizeof(float));
            if (!Vectorized || dst.Length * sizeof(float) < StreamingStores.StreamingMinBytes || ((long)d & 3) != 0 || ((at + (2 * head)) & 3) != 0)
            {
                Add(bytes, at);
                StreamingStores.WidenBf16(src, dst);
                return;
            }

            Widen(s, d, head);
            Bytes(bytes, at, 0, 2 * head);
            int words = (src.Length - head) >> 1;
            int done = head + (Words((byte*)(s + head), (byte*)(d + head), words, (at + (2 * head)) >> 2, Store.WidenBf16) / sizeof(ushort));
            Widen(s + done, d + done, src.Length - done);
            Bytes(bytes, at, 2 * done, bytes.Length - (2 * done));
        }
    }

    // The vector loops need AVX2 (and are off when the kernels are forced scalar, as the tests do).
    private static bool Vectorized => Avx2.IsSupported && SimdSelect.Current != SimdWidth.Scalar;

    private enum Store
    {
        None,
        Copy,
        WidenBf16,
    }

    private static unsafe void Widen(ushort* s, float* d, int n)
    {
        for (int i = 0; i < n; i++)
        {
            d[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
        }
    }

    // Bytes [from, from + count) of span, at stream offset at + index: one term each.
    private int Bytes(ReadOnlySpan<byte> span, long at, int from, int count)
    {
        for (int i = from; i < from + count; i++)
        {
            long t = at + i;
            ulong v = (ulong)span[i] << (int)((t & 3) * 8);
            sum += v;
            weighted += ((ulong)(t >> 2) + 1) * v;
        }

        return count;
    }

    // Whole words from s (word p0 of the stream on): the vector loop where it can (8 words a step, stores into an
    // aligned d as asked), a scalar loop for the rest when nothing is stored; returns the bytes of s consumed.
    private unsafe int Words(byte* s, byte* d, int words, long p0, Store store)
    {
        int steps = Vectorized ? words / 8 : 0;
        if (steps > 0)
        {
            var zero = Vector256<uint>.Zero;
            Vector256<ulong> aLo = default, aHi = default, bLo = default, bHi = default;
            for (int k = 0; k < steps; k++)
            {
                var x = Vector256.Load((uint*)(s + (32L * k)));
                if (store == Store.Copy)
                {
                    Vector256.StoreAlignedNonTemporal(x, (uint*)(d + (32L * k)));
                }
                else if (store == Store.WidenBf16)
                {
                    var (lo, hi) = Vector256.Widen(x.AsUInt16());
                    Vector256.StoreAlignedNonTemporal(Vector256.ShiftLeft(lo, 16), (uint*)(d + (64L * k)));
                    Vector256.StoreAlignedNonTemporal(Vector256.ShiftLeft(hi, 16), (uint*)(d + (64L * k) + 32));
                }

                aLo += Avx2.UnpackLow(x, zero).AsUInt64();    // words 0, 1, 4, 5 of the step
                aHi += Avx2.UnpackHigh(x, zero).AsUInt64();   // words 2, 3, 6, 7
                bLo += aLo;
                bHi += aHi;
            }

            // Lane j (word j of each step) holds A_j = Σ_k x_kj and B_j = Σ_k (K − k)·x_kj, so Σ_k k·x_kj = K·A_j − B_j
            // and lane j adds (p0 + j + 1)·A_j + 8·(K·A_j − B_j) to T.
            ulong bigK = (ulong)steps;
            ReadOnlySpan<int> loWord = [0, 1, 4, 5];
            ReadOnlySpan<int> hiWord = [2, 3, 6, 7];
            for (int lane = 0; lane < 8; lane++)
            {
                ulong a = lane < 4 ? aLo.GetElement(lane) : aHi.GetElement(lane - 4);
                ulong b = lane < 4 ? bLo.GetElement(lane) : bHi.GetElement(lane - 4);
                ulong j = (ulong)(lane < 4 ? loWord[lane] : hiWord[lane - 4]);
                sum += a;
                weighted += (((ulong)p0 + j + 1) * a) + (8 * ((bigK * a) - b));
            }
        }

        int i = steps * 8;
        if (store != Store.None)
        {
            return i * 4;
        }

        for (; i < words; i++)
        {
            ulong w = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(s + (4L * i), 4));
            sum += w;
            weighted += ((ulong)p0 + (ulong)i + 1) * w;
        }

        return words * 4;
    }

    // The 64-bit finalizer of MurmurHash3: every input bit reaches every output bit.
    private static ulong Mix(ulong x)
    {
        x ^= x >> 33;
        x *= 0xFF51AFD7ED558CCDUL;
        x ^= x >> 33;
        x *= 0xC4CEB9FE1A85EC53UL;
        x ^= x >> 33;
        return x;
    }
}
