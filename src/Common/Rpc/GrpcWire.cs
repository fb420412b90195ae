using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Google.Protobuf;

namespace K2RL.Common.Rpc;

/// <summary>
/// The gRPC over HTTP/2 wire format, shared by server and client: 5-byte length-prefixed frames,
/// <c>grpc-timeout</c>, percent-encoded <c>grpc-message</c>, and the HTTP-status fallback mapping.
/// </summary>
internal static class GrpcWire
{
    public const string ContentType = "application/grpc";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string Identity = "identity";
    public const int HeaderSize = 5;

    /// <summary>gRPC's customary default for the largest message a peer accepts.</summary>
    public const int DefaultMaxReceiveMessageSize = 4 * 1024 * 1024;

    private const long MaxTimeoutValue = 99_999_999; // at most 8 digits

    /// <summary>True for <c>application/grpc</c> and <c>application/grpc+proto</c>, with or without parameters.</summary>
    public static bool IsGrpcContentType(string? contentType)
    {
        if (contentType is null)
        {
            return false;
        }

        int semicolon = contentType.IndexOf(';');
        var mediaType = (semicolon >= 0 ? contentType[..semicolon] : contentType).Trim();
        return mediaType.Equals(ContentType, StringComparison.OrdinalIgnoreCase)
            || mediaType.Equals(ContentType + "+proto", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Reads one length-prefixed message. Returns null at a clean end of stream (between frames);
    /// throws <see cref="RpcException"/> for a truncated, compressed, oversized or unparsable frame.
    /// </summary>
    public static async ValueTask<T?> ReadMessageAsync<T>(Stream stream, MessageParser<T> parser, int maxSize, CancellationToken ct)
        where T : class, IMessage<T>
    {
        byte[] header = new byte[HeaderSize];
        int got = await stream.ReadAtLeastAsync(header, HeaderSize, throwOnEndOfStream: false, ct).ConfigureAwait(false);
        if (got == 0)
        {
            return null;
        }

        if (got < HeaderSize)
        {
            throw new RpcException(StatusCode.Internal, $"truncated frame: stream ended after {got} of {HeaderSize} header bytes");
        }

        if (header[0] == 1)
        {
            throw new RpcException(StatusCode.Internal, "compressed frame received, but no grpc-encoding other than identity was negotiated");
        }

        if (header[0] != 0)
        {
            throw new RpcException(StatusCode.Internal, $"invalid frame: compressed flag is {header[0]}, must be 0 or 1");
        }

        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(1));
        if (length > (uint)maxSize)
        {
            throw new RpcException(StatusCode.ResourceExhausted, $"received message of {length} bytes exceeds the limit of {maxSize} bytes");
        }

        int len = (int)length;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(len, 1));
        try
        {
            got = len == 0 ? 0 : await stream.ReadAtLeastAsync(buffer.AsMemory(0, len), len, throwOnEndOfStream: false, ct).ConfigureAwait(false);
            if (got < len)
            {
                throw new RpcException(StatusCode.Internal, $"truncated frame: stream ended after {got} of {len} message bytes");
            }

            try
            {
                return parser.ParseFrom(new ReadOnlySpan<byte>(buffer, 0, len));
            }
            catch (InvalidProtocolBufferException e)
            {
                throw new RpcException(StatusCode.Internal, $"malformed {typeof(T).Name} message: {e.Message}");
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Serializes one message as a frame (flag 0, big-endian length, bytes) and flushes it.</summary>
    public static async ValueTask WriteMessageAsync(Stream stream, IMessage message, int maxSize, CancellationToken ct)
    {
        int size = CheckedSize(message, maxSize);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(HeaderSize + size);
        try
        {
            WriteFrame(buffer.AsSpan(0, HeaderSize + size), message);
            await stream.WriteAsync(buffer.AsMemory(0, HeaderSize + size), ct).ConfigureAwait(false);
            await stream.FlushAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>One message as a frame in a new array (the body of a unary or server-streaming request).</summary>
    public static byte[] Frame(IMessage message, int maxSize)
    {
        var frame = new byte[HeaderSize + CheckedSize(message, maxSize)];
        WriteFrame(frame, message);
        return frame;
    }

    private static int CheckedSize(IMessage message, int maxSize)
    {
        int size = message.CalculateSize();
        if (size > maxSize)
        {
            throw new RpcException(StatusCode.ResourceExhausted, $"message of {size} bytes exceeds the send limit of {maxSize} bytes");
        }

        return size;
    }

    private static void WriteFrame(Span<byte> frame, IMessage message)
    {
        frame[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(frame[1..], (uint)(frame.Length - HeaderSize));
        message.WriteTo(frame[HeaderSize..]);
    }

    /// <summary>
    /// Formats a positive timeout as <c>grpc-timeout</c>: at most 8 digits and a unit, using the finest
    /// unit that fits and rounding up so that the peer never sees a shorter deadline than ours.
    /// </summary>
    public static string EncodeTimeout(TimeSpan timeout)
    {
        long ticks = Math.Max(timeout.Ticks, 1);
        ReadOnlySpan<(long TicksPerUnit, char Unit)> units =
        [
            (TimeSpan.TicksPerMicrosecond, 'u'),
            (TimeSpan.TicksPerMillisecond, 'm'),
            (TimeSpan.TicksPerSecond, 'S'),
            (TimeSpan.TicksPerMinute, 'M'),
            (TimeSpan.TicksPerHour, 'H'),
        ];
        foreach (var (perUnit, unit) in units)
        {
            long value = (ticks + perUnit - 1) / perUnit;
            if (value <= MaxTimeoutValue)
            {
                return value.ToString(CultureInfo.InvariantCulture) + unit;
            }
        }

        return MaxTimeoutValue.ToString(CultureInfo.InvariantCulture) + "H";
    }

    /// <summary>Parses <c>grpc-timeout</c> (1–8 digits and one of H M S m u n).</summary>
    public static bool TryParseTimeout(string value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length < 2 || value.Length > 9)
        {
            return false;
        }

        long n = 0;
        foreach (char c in value.AsSpan(0, value.Length - 1))
        {
            if (c < '0' || c > '9')
            {
                return false;
            }

            n = (n * 10) + (c - '0');
        }

        long ticks = value[^1] switch
        {
            'H' => n * TimeSpan.TicksPerHour,
            'M' => n * TimeSpan.TicksPerMinute,
            'S' => n * TimeSpan.TicksPerSecond,
            'm' => n * TimeSpan.TicksPerMillisecond,
            'u' => n * TimeSpan.TicksPerMicrosecond,
            'n' => (n + 99) / 100,
            _ => -1,
        };
        if (ticks < 0)
        {
            return false;
        }

        timeout = TimeSpan.FromTicks(ticks);
        return true;
    }

    /// <summary>Percent-encodes a status message: UTF-8 bytes outside 0x20–0x7E, and '%', become %XX.</summary>
    public static string EncodeMessage(string message)
    {
        var sb = new StringBuilder(message.Length);
        foreach (byte b in Encoding.UTF8.GetBytes(message))
        {
            if (b is >= 0x20 and <= 0x7E && b != (byte)'%')
            {
                sb.Append((char)b);
            }
            else
            {
                sb.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
            }
        }

        return sb.ToString();
    }

    /// <summary>Decodes a percent-encoded status message; a malformed escape is kept as written.</summary>
    public static string DecodeMessage(string encoded)
    {
        if (!encoded.Contains('%'))
        {
            return encoded;
        }

        var bytes = new List<byte>(encoded.Length);
        for (int i = 0; i < encoded.Length; i++)
        {
            if (encoded[i] == '%' && i + 2 < encoded.Length
                && byte.TryParse(encoded.AsSpan(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
            {
                bytes.Add(b);
                i += 2;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(encoded[i].ToString()));
            }
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>The gRPC status a client derives from a non-200 HTTP status (gRPC's http-grpc-status-mapping).</summary>
    public static StatusCode FromHttpStatus(int httpStatus) => httpStatus switch
    {
        400 => StatusCode.Internal,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.Unimplemented,
        429 or 502 or 503 or 504 => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };
}
