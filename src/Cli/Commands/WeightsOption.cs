using System.CommandLine;

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
