using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;

namespace K2RL.Model.Tests.IO;

/// <summary>The safetensors format itself: layout on disk, dtype conversions, round trips.</summary>
public class SafetensorsFormatTests
{
    [Fact]
    public void WrittenFileHasTheSafetensorsLayout()
    {
        using var dir = new TempDirectory();
        string path = dir.At("a.safetensors");
        SafetensorsWriter.Write(path,
        [
            new SafetensorsTensor("b", [2, 3], new float[] { 1, 2, 3, 4, 5, 6 }, SafetensorsDType.BF16),
            new SafetensorsTensor("a", [2], new float[] { 1.5f, -2f }),
        ], new Dictionary<string, string> { ["step"] = "7" });

        byte[] file = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.Equal(0, (8 + n) % 8);                                  // data section 8-byte aligned
        Assert.Equal(8 + n + 2 * 4 + 6 * 2, file.Length);
        string headerText = Encoding.UTF8.GetString(file, 8, (int)n);
        Assert.StartsWith("{", headerText);
        Assert.EndsWith("}", headerText.TrimEnd(' '));                     // padded with spaces only
        var header = JsonNode.Parse(headerText)!.AsObject();
        Assert.Equal("pt", header["__metadata__"]!["format"]!.GetValue<string>());
        Assert.Equal("7", header["__metadata__"]!["step"]!.GetValue<string>());
        Assert.Equal("F32", header["a"]!["dtype"]!.GetValue<string>());       // widest dtype first
        Assert.Equal(new long[] { 0, 8 }, IoTestFiles.Offsets(header, "a"));
        Assert.Equal(new long[] { 8, 20 }, IoTestFiles.Offsets(header, "b"));
        Assert.Equal(1.5f, BitConverter.ToSingle(file, (int)(8 + n)));
        Assert.Equal(0x3F80, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan((int)(8 + n + 8))));   // bf16 1.0
        Assert.Equal(0x40C0, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan((int)(8 + n + 18))));  // bf16 6.0
    }

    [Fact]
    public void StreamAndFileWritersProduceTheSameBytes()
    {
        var layout = new ParameterLayout(IoTestFiles.TestConfig());
        var parameters = IoTestFiles.RandomParameters(layout, seed: 9);
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteLayout(dir.At("f.safetensors"), layout, parameters, SafetensorsDType.BF16);
        using var stream = new MemoryStream();
        SafetensorsWriter.WriteLayoutTo(stream, layout, parameters, SafetensorsDType.BF16);
        Assert.Equal(File.ReadAllBytes(dir.At("f.safetensors")), stream.ToArray());
    }

    [Fact]
    public void ReadsAFileLaidOutByTheReferenceWriter()
    {
        // What safetensors.torch.save_file({"w": torch.tensor([[1., 2.], [3., 4.]])}) writes: compact JSON padded
        // with spaces to a multiple of 8, then the raw little-endian data.
        string json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
        json = json.PadRight((json.Length + 7) / 8 * 8);
        var data = new byte[16];
        for (int i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4 * i), i + 1);
        }

        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.At("ref.safetensors"), IoTestFiles.Compose(json, data));
        using var reader = SafetensorsReader.Open(dir.At("ref.safetensors"));
        Assert.Equal(new long[] { 2, 2 }, reader.Header.Entries.Single().Shape);
        Assert.Empty(reader.Header.Metadata);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, reader.ReadTensor("w"));
    }

    [Fact]
    public void ReadsBf16AndF16AgainstHandComputedValues()
    {
        ushort[] bf16 = [0x3F80, 0xC000, 0x3EAB, 0x7F7F, 0x0001, 0x8000];
        float[] bf16Expected = [1f, -2f, 0.333984375f, 3.3895314e38f, 9.18355e-41f, -0f];
        ushort[] f16 = [0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x3E00];
        float[] f16Expected = [1f, -2f, 0.333251953125f, 65504f, 5.9604645e-08f, 1.5f];
        var data = new byte[24];
        for (int i = 0; i < 6; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(2 * i), bf16[i]);
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(12 + 2 * i), f16[i]);
        }

        string json = "{\"x\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                      + "\"y\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[12,24]}}";
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.At("h.safetensors"), IoTestFiles.Compose(json, data));
        using var reader = SafetensorsReader.Open(dir.At("h.safetensors"));
        float[] x = reader.ReadTensor("x");
        float[] y = reader.ReadTensor("y");
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(bf16Expected[i]), BitConverter.SingleToInt32Bits(x[i]));
            Assert.Equal(f16Expected[i], y[i]);
        }
    }

    [Theory]
    [InlineData(1.0f, 0x3F80)]
    [InlineData(1.00390625f, 0x3F80)]       // 1 + 2^-8: halfway, rounds to the even 1.0
    [InlineData(1.01171875f, 0x3F82)]       // 1 + 3·2^-8: halfway, rounds to the even 1.015625
    [InlineData(1.0039064f, 0x3F81)]        // just above halfway rounds up
    [InlineData(-0.0f, 0x8000)]
    [InlineData(float.PositiveInfinity, 0x7F80)]
    [InlineData(3.4028235e38f, 0x7F80)]     // float.MaxValue rounds past bf16's largest finite value
    public void Bf16RoundsToNearestEven(float value, int expected) =>
        Assert.Equal(expected, SafetensorsDTypes.FloatToBf16(value));

    [Fact]
    public void Bf16KeepsNaNANaN() =>
        Assert.True(float.IsNaN(SafetensorsDTypes.Bf16ToFloat(SafetensorsDTypes.FloatToBf16(float.NaN))));

    [Fact]
    public void WritingAValueThatDoesNotFitF16NamesTheTensorAndElement()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<K2Exception>(() => SafetensorsWriter.Write(dir.At("o.safetensors"),
            [new SafetensorsTensor("big", [3], new float[] { 1, 70000, 2 }, SafetensorsDType.F16)]));
        Assert.Contains("\"big\"", e.Message);
        Assert.Contains("element 1", e.Message);
        Assert.False(File.Exists(dir.At("o.safetensors")));
        Assert.Empty(Directory.GetFiles(dir.Path));                          // no temp file left behind
    }

    [Theory]
    [InlineData(SafetensorsDType.F32)]
    [InlineData(SafetensorsDType.BF16)]
    [InlineData(SafetensorsDType.F16)]
    public void LargeTensorsRoundTripThroughTheChunkedPath(SafetensorsDType dtype)
    {
        // 600k values: more than one conversion chunk in both the writer and the reader.
        var values = new float[600_001];
        var rng = new Random(3);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(rng.NextDouble() * 20 - 10);
        }

        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.At("l.safetensors"), [new SafetensorsTensor("v", [values.Length], values, dtype)]);
        using var reader = SafetensorsReader.Open(dir.At("l.safetensors"));
        float[] back = reader.ReadTensor("v");
        for (int i = 0; i < values.Length; i++)
        {
            float expected = dtype switch
            {
                SafetensorsDType.BF16 => SafetensorsDTypes.Bf16ToFloat(SafetensorsDTypes.FloatToBf16(values[i])),
                SafetensorsDType.F16 => (float)(Half)values[i],
                _ => values[i],
            };
            if (expected != back[i])
            {
                Assert.Fail($"element {i}: wrote {values[i]}, expected {expected} back, got {back[i]}");
            }
        }
    }

    [Fact]
    public void AFailedWriteLeavesTheOldFileIntact()
    {
        using var dir = new TempDirectory();
        string path = dir.At("keep.txt");
        AtomicFile.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write("partial"u8);
            throw new InvalidOperationException("crash mid-write");
        }));
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void ADirectoryAppearsWholeOrNotAtAll()
    {
        using var dir = new TempDirectory();
        string target = dir.At("step-1");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.WriteDirectory(target, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, "a.txt"), "a");
            throw new InvalidOperationException("crash while writing the checkpoint");
        }));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));              // neither the target nor the temporary

        AtomicFile.WriteDirectory(target, tmp =>
        {
            Directory.CreateDirectory(Path.Combine(tmp, "sub"));
            File.WriteAllText(Path.Combine(tmp, "sub", "b.txt"), "b");
        });
        Assert.Equal("b", File.ReadAllText(Path.Combine(target, "sub", "b.txt")));
        Assert.Throws<K2Exception>(() => AtomicFile.WriteDirectory(target, _ => { }));

        AtomicFile.WriteDirectory(target, tmp => File.WriteAllText(Path.Combine(tmp, "c.txt"), "c"), replace: true);
        Assert.Equal(new[] { "c.txt" }, Directory.GetFileSystemEntries(target).Select(Path.GetFileName));
        Assert.Equal(new[] { "step-1" }, Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }
}
