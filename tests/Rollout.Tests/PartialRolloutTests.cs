using K2RL.CheckpointEngine;
using K2RL.Common;
using K2RL.Rollout;

namespace K2RL.Rollout.Tests;

public sealed class PartialRolloutTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-partial-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static List<GenerationRequest> Requests() =>
    [
        new("a", [1, 2, 3], new SamplingParams { Temperature = 0.8f, TopP = 0.9f, MaxTokens = 40, Seed = 1, StopOnRepetition = false }),
        new("b", [4], new SamplingParams { Temperature = 1.2f, TopK = 10, MaxTokens = 60, Seed = 2, StopOnRepetition = false }),
        new("c", [5, 6], new SamplingParams { Temperature = 0f, MaxTokens = 25, Seed = 3, StopOnRepetition = false }),
        new("d", [7, 8, 9, 10], new SamplingParams { MaxTokens = 8, Seed = 4, StopOnRepetition = false }),
    ];

    private static Dictionary<string, GenerationResult> Uninterrupted(Func<IDecoder> make)
    {
        var engine = new RolloutEngine(make());
        var handles = Requests().Select(r => engine.Submit(r)).ToList();
        engine.RunUntilIdle();
        return handles.ToDictionary(h => h.Id, h => h.Result!);
    }

    internal static void PauseAndResumeGivesTheUninterruptedTokens(Func<IDecoder> make, IPartialRolloutStore store, long budget)
    {
        var expected = Uninterrupted(make);

        var finished = new Dictionary<string, GenerationResult>();
        var engine = new RolloutEngine(make());
        var handles = Requests().Select(r => engine.Submit(r)).ToList();
        int iterations = 0, pausedTotal = 0;
        while (true)
        {
            var report = engine.RunIteration(budget, store);
            iterations++;
            pausedTotal += report.Paused;
            foreach (var h in handles)
            {
                var r = h.Result!;
                if (r.FinishReason != FinishReason.Paused)
                {
                    finished[r.Id] = r;
                }
            }

            var partials = store.TakeAll();
            if (partials.Count == 0)
            {
                break;
            }

            engine = new RolloutEngine(make()); // a later iteration, possibly another process
            handles = partials.Select(p => engine.Resume(p)).ToList();
        }

        Assert.True(iterations > 2, $"only {iterations} iterations: the budget never paused anything");
        Assert.True(pausedTotal > 0);
        foreach (var (id, want) in expected)
        {
            var got = finished[id];
            Assert.Equal(want.FinishReason, got.FinishReason);
            Assert.Equal(want.TokenIds, got.TokenIds);
            Assert.Equal(want.Tokens.Select(t => t.LogProb), got.Tokens.Select(t => t.LogProb));
            Assert.Equal(want.Tokens.Select(t => t.WeightVersion), got.Tokens.Select(t => t.WeightVersion));
        }
    }

    [Fact]
    public void PauseAndResumeInMemoryGivesExactlyTheUninterruptedRun() =>
        PauseAndResumeGivesTheUninterruptedTokens(() => new HashDecoder(maxBatch: 3), new InMemoryPartialRolloutStore(), budget: 17);

    [Fact]
    public void PauseAndResumeThroughFilesGivesExactlyTheUninterruptedRun() =>
        PauseAndResumeGivesTheUninterruptedTokens(() => new HashDecoder(maxBatch: 3), new FilePartialRolloutStore(dir), budget: 23);

    [Fact]
    public void ResumedUnderNewerWeightsTheNewTokensCarryTheNewVersion()
    {
        var store = new InMemoryPartialRolloutStore();
        var engine = new RolloutEngine(new HashDecoder());
        engine.Submit(new GenerationRequest("v", [1], new SamplingParams { MaxTokens = 30, Seed = 1, StopOnRepetition = false }));
        var report = engine.RunIteration(10, store);
        Assert.Equal(1, report.Paused);

        var source = new InProcessWeightChannel();
        source.Publish(new WeightSet(7, [0.125f]));
        var next = new RolloutEngine(new HashDecoder(), weights: source);
        var h = next.Resume(store.TakeAll().Single());
        next.RunUntilIdle();
        var r = h.Result!;
        Assert.Equal(30, r.Tokens.Count);
        Assert.All(r.Tokens.Take(10), t => Assert.Equal(0, t.WeightVersion));
        Assert.All(r.Tokens.Skip(10), t => Assert.Equal(7, t.WeightVersion));
    }

    [Fact]
    public void FileStoreRoundTripsExactlyAndLeavesNoTemporaryFiles()
    {
        var store = new FilePartialRolloutStore(dir);
        var p = new PartialRollout
        {
            Id = "job/7:ü",
            Prompt = [1, 2, 3],
            Sampling = new SamplingParams { Temperature = 0.7f, TopK = 5, TopP = 0.9f, MaxTokens = 99, StopTokens = [4], StopStrings = ["\n\n", "<|im_end|>"], Seed = ulong.MaxValue },
            Tokens = [new(5, -1.2345678f, 0.7f, 3), new(6, -0.1f, 0.7f, 4)],
            Seed = ulong.MaxValue,
            RngState = 0xDEADBEEFCAFEF00DUL,
            Pauses = 2,
        };
        store.Save(p);
        store.Save(p with { Pauses = 3 }); // overwrite
        Assert.Equal(["job/7:ü"], store.Ids());
        Assert.True(new FilePartialRolloutStore(dir).TryLoad("job/7:ü", out var q));
        Assert.Equal(p.Prompt, q!.Prompt);
        Assert.Equal(p.Tokens, q.Tokens);
        Assert.Equal(p.RngState, q.RngState);
        Assert.Equal(p.Seed, q.Seed);
        Assert.Equal(3, q.Pauses);
        Assert.Equal(p.Sampling.StopStrings, q.Sampling.StopStrings);
        Assert.Equal(p.Sampling with { StopStrings = [], StopTokens = [] }, q.Sampling with { StopStrings = [], StopTokens = [] });
        Assert.Single(Directory.GetFiles(dir));
        Assert.True(store.Remove("job/7:ü"));
        Assert.Empty(store.Ids());
    }

    [Fact]
    public void FileStoreRejectsOtherFormatsAndVersions()
    {
        var p = new PartialRollout { Id = "x", Prompt = [1], Sampling = new SamplingParams(), Tokens = [], Seed = 1, RngState = 2 };
        string json = FilePartialRolloutStore.Serialize(p);
        Assert.Equal(p.Id, FilePartialRolloutStore.Deserialize(json, "f").Id);
        var wrongVersion = Assert.Throws<CorruptFileException>(() => FilePartialRolloutStore.Deserialize(json.Replace("\"version\":1", "\"version\":9"), "f"));
        Assert.Contains("version 9", wrongVersion.Message);
        Assert.Throws<CorruptFileException>(() => FilePartialRolloutStore.Deserialize(json.Replace("k2rl.partial_rollout", "other"), "f"));
        Assert.Throws<CorruptFileException>(() => FilePartialRolloutStore.Deserialize(json[..^10], "f"));
    }
}
