using System.CommandLine;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model.IO;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl export --checkpoint DIR --format onnx --out model.onnx [--json]</c>: the decoder with its compressed cache
/// as inputs and outputs, for ONNX Runtime and other engines (<see cref="OnnxExport"/>, docs/ONNX.md).
/// </summary>
public sealed class ExportCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record ExportOptions(string Checkpoint, string Format, string Out, bool Json);

    /// <summary>The formats <c>--format</c> takes.</summary>
    internal static readonly IReadOnlyList<string> Formats = ["onnx"];

    public IEnumerable<Command> Build(CliContext context)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = CliContext.CheckpointHelp, Required = true };
        var format = new Option<string>("--format") { Description = "Output format: onnx (opset 17, the MLA cache as inputs/outputs)", DefaultValueFactory = _ => "onnx" };
        var output = new Option<string>("--out") { Description = "The file to write, e.g. model.onnx", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("export", "Export a checkpoint for serving elsewhere (ONNX: logits and the compressed KV cache)")
        {
            checkpoint, format, output, json,
        };
        command.SetAction(parse => Run(context, new ExportOptions(parse.GetValue(checkpoint)!, parse.GetValue(format)!, parse.GetValue(output)!, parse.GetValue(json))));
        yield return command;
    }

    internal static int Run(CliContext context, ExportOptions options)
    {
        if (!Formats.Contains(options.Format))
        {
            throw new K2Exception($"--format \"{options.Format}\" is not supported (one of: {string.Join(", ", Formats)})");
        }

        var checkpoint = ModelCheckpoint.Load(options.Checkpoint, warn: context.Warn);
        var config = checkpoint.Config;
        context.Error.WriteLine($"exporting {checkpoint.Directory} ({checkpoint.Layout.ParameterCount:N0} parameters) to {options.Out}");
        long bytes = OnnxExport.Save(options.Out, config, checkpoint.Parameters);
        var result = new JsonObject
        {
            ["out"] = options.Out,
            ["format"] = options.Format,
            ["opset"] = OnnxExport.Opset,
            ["bytes"] = bytes,
            ["checkpoint"] = checkpoint.Directory,
            ["layers"] = config.NumHiddenLayers,
            ["inputs"] = $"{OnnxExport.InputIds} [batch, sequence] int64; {OnnxExport.PastLatent(0)}.. [batch, past, {config.KvLoraRank}], "
                         + $"{OnnxExport.PastKeyRope(0)}.. [batch, past, {config.QkRopeHeadDim}] float32",
            ["outputs"] = $"{OnnxExport.Logits} [batch, sequence, {config.VocabSize}]; present_latent.*, present_key_rope.* [batch, past + sequence, ...]",
        };
        if (options.Json)
        {
            context.Out.WriteLine(result.ToJsonString());
        }
        else
        {
            context.Out.WriteLine($"wrote {options.Out}: {bytes:N0} bytes, ONNX opset {OnnxExport.Opset}, {config.NumHiddenLayers} layers");
            context.Out.WriteLine($"inputs:  {result["inputs"]}");
            context.Out.WriteLine($"outputs: {result["outputs"]}");
        }

        return 0;
    }
}
