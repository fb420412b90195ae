using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace K2RL.Cli.Tests;

/// <summary>Checks of the figures <c>k2rl plot</c> writes: PNG structure, and what an SVG draws.</summary>
internal static class Figures
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    /// <summary>Asserts a PNG's signature, its IHDR first and IEND last; returns the IHDR's width and height.</summary>
    public static (int Width, int Height) PngSize(string path)
    {
        byte[] b = File.ReadAllBytes(path);
        Assert.True(b.Length > 57, $"{path}: {b.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, b[..8]);
        Assert.Equal(13, BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(8)));
        Assert.Equal("IHDR", Encoding.ASCII.GetString(b, 12, 4));
        Assert.Equal("IEND", Encoding.ASCII.GetString(b, b.Length - 8, 4));
        return (BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(20)));
    }

    /// <summary>An SVG parsed as XML: its size, its texts (with where each is placed), and its data lines.</summary>
    public sealed record SvgFigure(int Width, int Height, IReadOnlyList<(string Text, double X, double Y)> Texts, IReadOnlyList<string> LineColors)
    {
        public IEnumerable<string> Strings => Texts.Select(t => t.Text);
    }

    /// <summary>
    /// Parses an SVG (throws if it is not XML). Its data lines are the 1.6-wide stroked paths of the clipped groups
    /// without text (the legend's group has the names; reference lines are thinner); one colour per series.
    /// </summary>
    public static SvgFigure ReadSvg(string path)
    {
        var root = XDocument.Load(path).Root!;
        Assert.Equal(Svg + "svg", root.Name);
        var texts = root.Descendants(Svg + "text").Select(t =>
        {
            var m = Regex.Match((string?)t.Attribute("transform") ?? "", @"(?:translate\(|matrix\(\S+ \S+ \S+ \S+ )([-0-9.e]+) ([-0-9.e]+)\)");
            return (t.Value.Trim(), m.Success ? D(m.Groups[1].Value) : double.NaN, m.Success ? D(m.Groups[2].Value) : double.NaN);
        }).ToList();
        var lines = root.Descendants(Svg + "g").Where(g => g.Attribute("clip-path") is not null && !g.Descendants(Svg + "text").Any())
            .SelectMany(g => g.Elements(Svg + "path")).Where(p => (string?)p.Attribute("stroke-width") == "1.6")
            .Select(p => (string)p.Attribute("stroke")!).ToList();
        return new SvgFigure((int)D((string)root.Attribute("width")!), (int)D((string)root.Attribute("height")!), texts, lines);
    }

    /// <summary>Asserts DIR/NAME.png and DIR/NAME.svg are an 800×450 figure titled <paramref name="title"/> with one line per series.</summary>
    public static SvgFigure AssertFigure(string dir, string name, string title, string xLabel, string yLabel, params string[] series)
    {
        Assert.Equal((800, 450), PngSize(Path.Combine(dir, name + ".png")));
        var svg = ReadSvg(Path.Combine(dir, name + ".svg"));
        Assert.Equal((800, 450), (svg.Width, svg.Height));
        foreach (string text in new[] { title, xLabel, yLabel }.Concat(series))
        {
            Assert.Contains(text, svg.Strings);
        }

        Assert.Equal(series.Length, svg.LineColors.Count);
        Assert.Equal(series.Length, svg.LineColors.Distinct().Count());
        return svg;
    }

    private static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);
}
