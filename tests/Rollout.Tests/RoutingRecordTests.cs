using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Rollout.Episodes;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary>
/// Routing replay's engine half: with <c>recordRouting</c> the real model's decoder keeps, per request, the experts every
/// position went to, and the results, episodes and their JSON carry that record to the trainer.
/// </summary>
public class RoutingRecordTests
{
    private static readonly ModelConfig Config =
        ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-nano.json"));

    private static K2Model Model()
    {
        var model = new K2Model(Config);
        model.InitializeWeights(11);
        foreach (ref float x in model.Layout["lm_head.weight"].Of(model.Parameters))
        {
            x *= 40f;   // a sharper random policy than the 0.02 init's flat one
        }

        return model;
    }

    private static ModelDecoder Decoder(K2Model model, bool record)
    {
        var d = new ModelDecoder(Config, maxBatch: 4, blockTokens: 8, recordRouting: record);
        d.LoadWeights(model.Parameters);
        return d;
    }

    [Fact]
    public void AResultCarriesTheRoutingOfItsPromptAndTokensAsTheTrainingForwardChoosesIt()
    {
        var model = Model();
        var engine = new RolloutEngine(Decoder(model, record: true));
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        var h = engine.Submit(new GenerationRequest("r", prompt,
            new SamplingParams { Temperature = 1f, MaxTokens = 12, Seed = 3, StopOnRepetition = false }));
        engine.RunUntilIdle();
        var result = h.Result!;
        int stride = Config.RoutingStride, K = Config.NumExpertsPerTok;
        int positions = prompt.Length + result.Tokens.Count;
        var routing = Assert.IsType<int[]>(result.Routing);
        Assert.Equal(positions * stride, routing.Length);
        Assert.All(routing.AsSpan((positions - 1) * stride).ToArray(), id => Assert.Equal(-1, id));   // the last token was never fed

        int[] sequence = [.. prompt, .. result.TokenIds];
        model.Forward(sequence, new int[sequence.Length], 1, sequence.Length);
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            int m = Config.MoeIndex(l);
            if (m < 0)
            {
                continue;
            }

            var own = model.ChosenExperts(l);
            for (int t = 0; t < positions - 1; t++)
            {
                Assert.Equal(own.Slice(t * K, K).ToArray().Order(), routing.AsSpan(t * stride + m * K, K).ToArray().Order());
            }
        }

        var plain = new RolloutEngine(Decoder(model, record: false));
        var hp = plain.Submit(new GenerationRequest("r", prompt,
            new SamplingParams { Temperature = 1f, MaxTokens = 12, Seed = 3, StopOnRepetition = false }));
        plain.RunUntilIdle();
        Assert.Null(hp.Result!.Routing);
        Assert.Equal(result.TokenIds, hp.Result.TokenIds);   // recording changes nothing else
    }

    [Fact]
    public async Task AMultiTurnEpisodeCarriesARoutingRecordOfItsTokensThroughItsJson()
    {
        var tokenizer = BpeTokenizer.ByteLevel();
        var engine = new RolloutEngine(Decoder(Model(), record: true), new EngineOptions { SampleableVocab = tokenizer.VocabSize });
        var registry = GymRegistry.CreateDefault();
        var runner = new EpisodeRunner(engine, tokenizer, registry.CreateEnvironment, new EpisodeOptions { Seed = 5, MaxResponseTokens = 40, MaxTurns = 3 });
        var batch = await runner.RunAsync([new EpisodeRequest("it0-tool_use-1-s0", "tool_use", 1, 1, 0), new EpisodeRequest("it0-arithmetic-2-s0", "arithmetic", 2, 1, 0)],
            [], 1f, long.MaxValue, CancellationToken.None);
        int stride = Config.RoutingStride;
        Assert.Equal(2, batch.Finished.Count);
        foreach (var t in batch.Finished.Where(t => t.Turns > 0))
        {
            var routing = Assert.IsType<int[]>(t.Routing);
            Assert.Equal(t.Tokens.Length * stride, routing.Length);
            // every position before the last sampled token was computed by the engine in the last turn
            int lastGenerated = Array.LastIndexOf(t.Generated, true);
            for (int p = 0; p < lastGenerated; p++)
            {
                Assert.All(routing.AsSpan(p * stride, stride).ToArray(), id => Assert.InRange(id, 0, Config.NRoutedExperts - 1));
            }

            var back = Trajectory.FromJson(t.ToJson());
            Assert.Equal(routing, back.Routing);
        }
    }

    [Fact]
    public void ATrajectoryWithACorruptRoutingRecordIsRefusedNamingTheField()
    {
        var t = new Trajectory
        {
            Id = "x", Env = "arithmetic", Tokens = [1, 2, 3], Generated = [false, true, true], LogProbs = [0, -1, -2], Versions = [-1, 0, 0],
            Routing = [0, 1, 2, 3, 4, 5], Conversation = [Message.UserText("q")], FirstPrompt = "q",
        };
        Assert.Equal(t.Routing, Trajectory.FromJson(t.ToJson()).Routing);
        Assert.Null(Trajectory.FromJson(new Trajectory
        {
            Id = "x", Env = "e", Tokens = [1], Generated = [false], LogProbs = [0], Versions = [-1], Conversation = [], FirstPrompt = "",
        }.ToJson()).Routing);

        var node = JsonNode.Parse(t.ToJson())!;
        node["routing"] = "not base64!";
        Assert.Contains("'routing'", Assert.Throws<CorruptFileException>(() => Trajectory.FromJson(node.ToJsonString())).Message);
        node["routing"] = Convert.ToBase64String(new byte[10]);   // 5 ids for 3 tokens
        Assert.Contains("'routing'", Assert.Throws<CorruptFileException>(() => Trajectory.FromJson(node.ToJsonString())).Message);
        node["routing"] = Convert.ToBase64String([0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);   // −2 is no expert
        Assert.Contains("expert id -2", Assert.Throws<CorruptFileException>(() => Trajectory.FromJson(node.ToJsonString())).Message);
    }
}
