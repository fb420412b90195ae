using System.CommandLine;
using K2RL.Model.Inference;

namespace K2RL.Cli.Commands;

/// <summary>The <c>--weights f32|bf16</c> option of the commands that run the rollout engine.</summary>
internal static class WeightsOption
{
    public static Option<string> Create() => new("--weights")
    {
        Description = "Values the rollout engine holds the weights at: f32 (as trained) or bf16 (rounded; decode reads the routed experts at half the bytes). Arithmetic is fp32 either way",
        DefaultValueFactory = _ => "f32",
    };
}

/// <summary>What <see cref="DecodeOptions"/> parsed.</summary>
internal readonly record struct DecodeSettings(string Checkpoint, float TopP, int MaxTokens, WeightPrecision Weights);

/// <summary>
/// The options every command that samples from a checkpoint through the rollout engine shares (<c>generate</c>,
/// <c>gym eval</c>): <c>--checkpoint</c>, <c>--top-p</c>, <c>--max-tokens</c>, <c>--weights</c>, defined once so their
/// names, help and parsing cannot drift apart. The temperature stays with each command: its default differs in kind
/// (generate samples at 1.0; gym eval is greedy for k = 1 and samples for pass@k).
/// </summary>
internal sealed class DecodeOptions
{
    public DecodeOptions(int defaultMaxTokens, string maxTokensHelp)
    {
        MaxTokens = new Option<int>("--max-tokens") { Description = maxTokensHelp, DefaultValueFactory = _ => defaultMaxTokens };
    }

    public Option<string> Checkpoint { get; } = new("--checkpoint") { Description = CliContext.CheckpointHelp, Required = true };

    public Option<float> TopP { get; } = new("--top-p") { Description = "Nucleus sampling mass, in (0, 1]", DefaultValueFactory = _ => 1f };

    public Option<int> MaxTokens { get; }

    public Option<string> Weights { get; } = WeightsOption.Create();

    public void AddTo(Command command)
    {
        command.Options.Add(Checkpoint);
        command.Options.Add(TopP);
        command.Options.Add(MaxTokens);
        command.Options.Add(Weights);
    }

    public DecodeSettings Read(ParseResult parse) => new(
        parse.GetValue(Checkpoint)!, parse.GetValue(TopP), parse.GetValue(MaxTokens), WeightPrecisions.Parse(parse.GetValue(Weights)!));
}
