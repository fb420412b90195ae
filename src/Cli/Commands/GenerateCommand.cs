using System.CommandLine;
using System.Text.Json;
using K2RL.Model.Inference;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary><c>k2rl generate --checkpoint DIR --prompt TEXT [...]</c>: sample from a checkpoint, streaming the text to stdout.</summary>
public sealed class GenerateCommand : ICommandProvider
{
    public string Group => "";

    public IEnumerable<Command> Build(CliContext context)
    {
        var decode = new DecodeOptions(128, "Response budget in tokens");
        var prompt = new Option<string>("--prompt") { Description = "Prompt text, sent as one user message in the chat format (see --raw)", Required = true };
        var raw = new Option<bool>("--raw") { Description = "Feed the prompt's text as it is, without the chat format's user turn and assistant header" };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (0: greedy)", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens (0: off)", DefaultValueFactory = _ => 0 };
        var n = new Option<int>("--n") { Description = "Samples of the prompt (sample i uses seed + i)", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of the sampler (default: random, reported with --json)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (tokens, log-probs, finish reasons) instead of streaming text" };
        var command = new Command("generate", "Generate text from a checkpoint with the rollout engine")
        {
            prompt, raw, temperature, topK, n, seed, json,
        };
        decode.AddTo(command);
        command.SetAction(parse =>
        {
            var d = decode.Read(parse);
            var options = new GenerateOptions
            {
                Checkpoint = d.Checkpoint,
                Prompt = parse.GetValue(prompt)!,
                Raw = parse.GetValue(raw),
                Temperature = parse.GetValue(temperature),
                TopP = d.TopP,
                TopK = parse.GetValue(topK),
                MaxTokens = d.MaxTokens,
                N = parse.GetValue(n),
                Seed = parse.GetValue(seed),
                Weights = d.Weights,
            };
            bool asJson = parse.GetValue(json);
            if (asJson)
            {
                var output = CheckpointGeneration.Run(options);
                context.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    prompt_tokens = output.PromptTokens,
                    samples = output.Samples.Select(s => new
                    {
                        index = s.Index,
                        text = s.Text,
                        tokens = s.Result.TokenIds,
                        logprobs = s.Result.Tokens.Select(t => t.LogProb),
                        weight_versions = s.Result.Tokens.Select(t => t.WeightVersion),
                        finish_reason = s.Result.FinishReason.ToString(),
                        truncated = s.Result.Truncated,
                        degenerate = s.Result.Degenerate,
                        seed = s.Result.Seed,
                    }),
                }));
                return 0;
            }

            var streamed = CheckpointGeneration.Run(options, piece =>
            {
                context.Out.Write(piece);
                context.Out.Flush();
            });
            context.Out.WriteLine();
            foreach (var s in streamed.Samples.Skip(1))
            {
                context.Out.WriteLine($"--- sample {s.Index} ---");
                context.Out.WriteLine(s.Text);
            }

            foreach (var s in streamed.Samples)
            {
                context.Error.WriteLine($"sample {s.Index}: {s.Result.Tokens.Count} tokens, {s.Result.FinishReason}{(s.Result.Truncated ? " (truncated)" : "")}, seed {s.Result.Seed}");
            }

            return 0;
        });
        yield return command;
    }
}
