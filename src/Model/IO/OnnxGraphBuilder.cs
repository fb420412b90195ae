using System.Runtime.InteropServices;
using Google.Protobuf;
using K2RL.Protos.Onnx;

namespace K2RL.Model.IO;

/// <summary>
/// Builds one ONNX <see cref="GraphProto"/> node by node: each call adds a node of the default ("ai.onnx") domain
/// and returns its output's name (fresh, unless the caller names it: a graph output). Initializers hold their
/// values as little-endian raw bytes. Only what <see cref="OnnxExport"/> needs; attributes are given as
/// (name, value) pairs of long, long[], float or <see cref="TensorProto"/>.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private int next;

    public GraphProto Graph { get; } = new();

    /// <summary>Adds a node with one output; returns the output's name (<paramref name="output"/> when given).</summary>
    public string Op(string opType, string[] inputs, string? output = null, params (string Name, object Value)[] attributes) =>
        Ops(opType, inputs, [output ?? Fresh(opType)], attributes)[0];

    /// <summary>Adds a node with <paramref name="outputs"/>.Length outputs (null entries get fresh names).</summary>
    public string[] Ops(string opType, string[] inputs, string?[] outputs, params (string Name, object Value)[] attributes)
    {
        var names = outputs.Select(o => o ?? Fresh(opType)).ToArray();
        var node = new NodeProto { OpType = opType, Name = $"{opType}_{next++}" };
        node.Input.Add(inputs);
        node.Output.Add(names);
        foreach (var (name, value) in attributes)
        {
            node.Attribute.Add(Attribute(name, value));
        }

        Graph.Node.Add(node);
        return names;
    }

    /// <summary>A float initializer of shape <paramref name="dims"/> (row-major <paramref name="values"/>).</summary>
    public string Floats(string name, ReadOnlySpan<float> values, params long[] dims)
    {
        Graph.Initializer.Add(Tensor(name, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values), dims));
        return name;
    }

    /// <summary>A 1-D int64 initializer (shapes, axes, split sizes), or a scalar when <paramref name="scalar"/>.</summary>
    public string Longs(long[] values, bool scalar = false)
    {
        string name = Fresh("const");
        Graph.Initializer.Add(Tensor(name, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values.AsSpan()),
            scalar ? [] : [values.Length]));
        return name;
    }

    /// <summary>A float scalar initializer.</summary>
    public string Scalar(float value)
    {
        string name = Fresh("const");
        Graph.Initializer.Add(Tensor(name, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(new[] { value }.AsSpan()), []));
        return name;
    }

    /// <summary>The one-element [1] float tensor ConstantOfShape's "value" attribute takes.</summary>
    public static TensorProto FillValue(float value) =>
        Tensor("", TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(new[] { value }.AsSpan()), [1]);

    /// <summary>A graph input or output: a tensor of <paramref name="type"/> with named (symbolic) or fixed dims.</summary>
    public static ValueInfoProto Value(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object d in dims)
        {
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s }
                : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture) });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private string Fresh(string hint) => $"{hint.ToLowerInvariant()}_{next++}";

    private static TensorProto Tensor(string name, TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes, long[] dims)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("ONNX raw_data is little-endian; this exporter runs on little-endian machines only");
        }

        var t = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        t.Dims.Add(dims);
        return t;
    }

    private static AttributeProto Attribute(string name, object value) => value switch
    {
        long i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        int i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        float f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = f },
        long[] ints => Ints(name, ints),
        TensorProto t => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = t },
        _ => throw new ArgumentException($"attribute {name}: unsupported value type {value.GetType().Name}", nameof(value)),
    };

    private static AttributeProto Ints(string name, long[] ints)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(ints);
        return a;
    }
}
