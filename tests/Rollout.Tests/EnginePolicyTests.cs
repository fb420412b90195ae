using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Gym.Eval;
using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary>
/// The Gym's policy and judge over the real engine: k2-test shapes with the byte-level tokenizer's vocabulary and a
/// longer context, random weights.
/// </summary>
public class EnginePolicyTests
{
    private static readonly BpeTokenizer Tokenizer = BpeTokenizer.ByteLevel();

    private static readonly Lazy<(ModelConfig Config, float[] Weights)> Model = new(() =>
    {
        var config = ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json")) with
        {
            VocabSize = 272,
            MaxPositionEmbeddings = 1536,
        };
        var model = new K2Model(config);
        model.InitializeWeights(11);
        // Sharpen the random policy so that sampling is not uniform noise (the 0.02 init gives near-flat logits).
        var head = model.Layout[config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"];
        foreach (ref float x in head.Of(model.Parameters))
        {
            x *= 40f;
        }

        return (config, model.Parameters);
    });

    private static RolloutEngine Engine(int maxBatch = 4)
    {
        var (config, weights) = Model.Value;
        var decoder = new ModelDecoder(config, maxBatch);
        decoder.LoadWeights(weights);
        return new RolloutEngine(decoder, new EngineOptions { SampleableVocab = Tokenizer.VocabSize });
    }

    private static EnginePolicy Policy(ulong seed, int maxBatch = 4, int maxTokens = 8, float temperature = 1f) =>
        new(Engine(maxBatch), Tokenizer, new EnginePolicyOptions { Temperature = temperature, MaxTokens = maxTokens, Seed = seed });

    /// <summary>Records every action a policy returns, per (task, sample), in order.</summary>
    private sealed class Recorder(IPolicy inner) : IPolicy
    {
        public List<(int Task, int Sample, string Action)> Actions { get; } = [];

        public async Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default)
        {
            var actions = await inner.GenerateAsync(requests, ct);
            for (int i = 0; i < requests.Count; i++)
            {
                Actions.Add((requests[i].Task, requests[i].Sample, actions[i]));
            }

            return actions;
        }
    }

    private static async Task<(EvalReport Report, Recorder Recorder)> Evaluate(string env, EnginePolicy policy, int n, int k)
    {
        var registry = GymRegistry.CreateDefault();
        var recorder = new Recorder(policy);
        var report = await Evaluator.RunAsync(env, () => registry.CreateEnvironment(env), recorder,
            new EvalOptions { N = n, SamplesPerTask = k });
        return (report, recorder);
    }

    [Fact]
    public async Task SameSeedSameActionsWhateverTheBatch()
    {
        var (first, a) = await Evaluate("arithmetic", Policy(seed: 5, maxBatch: 4), n: 3, k: 2);
        var (second, b) = await Evaluate("arithmetic", Policy(seed: 5, maxBatch: 1), n: 3, k: 2);
        Assert.Equal(6, a.Actions.Count);
        Assert.Equal(a.Actions, b.Actions);
        Assert.Equal(first.ToJson(), second.ToJson());
        Assert.Equal(Math.Round(first.Accuracy * 6), first.Accuracy * 6, 9);   // correct samples out of 6

        // Samples of one task differ (each has its own stream), and another seed gives other actions.
        Assert.Contains(a.Actions.GroupBy(x => x.Task), g => g.Select(x => x.Action).Distinct().Count() > 1);
        var (_, c) = await Evaluate("arithmetic", Policy(seed: 6), n: 3, k: 2);
        Assert.NotEqual(a.Actions, c.Actions);
    }

    [Fact]
    public async Task PromptIsTheChatFormatAndTheActionIsTheDecodedResponse()
    {
        var policy = Policy(seed: 1, temperature: 0, maxTokens: 6);
        var conversation = new[] { Message.SystemText("Be brief."), Message.UserText("What is 2+3?") };
        var actions = await policy.GenerateAsync([new PolicyRequest(conversation, [], 0, 0)]);
        var tokens = policy.EpisodeTokensOf(0, 0)!;
        int[] prompt = ChatEncoder.Encode(Tokenizer,
            [Message.SystemText("Be brief."), Message.UserText("What is 2+3?")], addGenerationPrompt: true);
        Assert.Equal(prompt, tokens.Take(prompt.Length));
        var response = tokens.Skip(prompt.Length).ToArray();
        int end = Tokenizer.SpecialTokenId(ChatTokens.ImEnd);
        Assert.Equal(end, response[^1]);   // the turn is closed whether the model ended it or the budget did
        Assert.Equal(Tokenizer.Decode(response[..^1]), actions[0]);
    }

    [Fact]
    public async Task LaterTurnsAppendTokensWithoutRetokenizingTheHistory()
    {
        var policy = Policy(seed: 3, maxTokens: 8);
        var tools = new[] { new ToolSpec("lookup", "Look a key up", """{"type":"object","properties":{"key":{"type":"string"}}}""") };
        var conversation = new List<Message> { Message.UserText("Find the value of key alpha.") };
        string first = (await policy.GenerateAsync([new PolicyRequest(conversation, tools, 2, 1)]))[0];
        var afterFirst = policy.EpisodeTokensOf(2, 1)!.ToArray();
        Assert.Equal(Tokenizer.SpecialTokenId(ChatTokens.ImSystem), afterFirst[0]);   // tool declarations first

        conversation.Add(Message.AssistantText(first));
        var result = Message.ToolResult("functions.lookup:0", "alpha = 42");
        conversation.Add(result);
        await policy.GenerateAsync([new PolicyRequest(conversation, tools, 2, 1)]);
        var afterSecond = policy.EpisodeTokensOf(2, 1)!.ToArray();

        // The first turn's tokens (prompt, sampled response, closing im_end) are kept as they were, the tool result and
        // the assistant header are appended.
        int[] appended = [.. ChatEncoder.EncodeMessage(Tokenizer, Message.ToolResult("functions.lookup:0", "alpha = 42")),
            .. ChatEncoder.GenerationPrompt(Tokenizer)];
        Assert.Equal(afterFirst, afterSecond.Take(afterFirst.Length));
        Assert.Equal(appended, afterSecond.Skip(afterFirst.Length).Take(appended.Length));

        // A conversation that does not continue the episode (another history) starts over from its messages.
        var other = new List<Message> { Message.UserText("Find the value of key alpha."), Message.AssistantText(first + "x"), result };
        await policy.GenerateAsync([new PolicyRequest(other, tools, 2, 1)]);
        var restarted = policy.EpisodeTokensOf(2, 1)!.ToArray();
        int[] declaration = [Tokenizer.SpecialTokenId(ChatTokens.ImSystem), .. Tokenizer.Encode("tool_declare", allowSpecial: false),
            Tokenizer.SpecialTokenId(ChatTokens.ImMiddle), .. Tokenizer.Encode(ToolSpec.DeclarationJson(tools), allowSpecial: false),
            Tokenizer.SpecialTokenId(ChatTokens.ImEnd)];
        int[] expected = [.. declaration, .. ChatEncoder.Encode(Tokenizer,
            [Message.UserText("Find the value of key alpha."), Message.AssistantText(first + "x"),
             Message.ToolResult("functions.lookup:0", "alpha = 42")], addGenerationPrompt: true)];
        Assert.Equal(expected, restarted.Take(expected.Length));
    }

    [Fact]
    public async Task MultiTurnToolEnvironmentRunsToTheEnd()
    {
        var policy = Policy(seed: 9, maxTokens: 6);
        var (report, recorder) = await Evaluate("tool_use", policy, n: 2, k: 1);
        Assert.Equal(2, report.N);
        Assert.Contains(report.Accuracy, new[] { 0.0, 0.5, 1.0 });   // correct episodes out of 2
        Assert.All(recorder.Actions, a => Assert.NotNull(a.Action));
        Assert.Equal(recorder.Actions.Count, policy.Stats.Turns);
        Assert.Equal(0, policy.Stats.Errors);
    }

    [Fact]
    public async Task ConversationBeyondTheContextIsAnEmptyActionNotACrash()
    {
        var policy = Policy(seed: 1);
        var huge = new[] { Message.UserText(new string('x', 4000)) };
        var actions = await policy.GenerateAsync([new PolicyRequest(huge, [], 0, 0), new PolicyRequest([Message.UserText("hi")], [], 1, 0)]);
        Assert.Equal("", actions[0]);
        Assert.Equal(1, policy.Stats.Errors);
        Assert.Null(policy.EpisodeTokensOf(0, 0));
        Assert.NotNull(policy.EpisodeTokensOf(1, 0));
    }

    [Fact]
    public async Task PolicyJudgesComparisonsParsedOrCountedNeverACrash()
    {
        var judge = new EngineJudge(Engine(), Tokenizer, maxTokens: 12);
        var critic = new CriticProtocol(judge, []);
        var scores = await critic.ScoreAsync("What is 2+3?", ["5", "The answer is 5.", "6"]);
        Assert.Equal(6, scores.Comparisons);   // 3 pairs, both orders
        Assert.All(scores.Outcomes, o => Assert.Equal(VerdictParser.Parse(o.Raw), o.Verdict));
        Assert.All(scores.Outcomes, o => Assert.NotNull(o.Raw));
        Assert.Equal(3, scores.WinRate.Count);
        Assert.All(scores.WinRate, w => Assert.InRange(w, 0, 1));
        Assert.Equal(0, judge.Failures);

        // Greedy: the same comparisons give the same verdict texts.
        var again = await critic.ScoreAsync("What is 2+3?", ["5", "The answer is 5.", "6"]);
        Assert.Equal(scores.Outcomes.Select(o => o.Raw), again.Outcomes.Select(o => o.Raw));

        // A comparison too long for the context is null (unparseable), the others still answered.
        var raw = await judge.JudgeAsync([new string('y', 5000), "Verdict?"]);
        Assert.Null(raw[0]);
        Assert.NotNull(raw[1]);
        Assert.Equal(1, judge.Failures);
        Assert.Equal(PairVerdict.Unparseable, VerdictParser.Parse(raw[0]));
    }
}
