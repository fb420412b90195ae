using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

/// <summary>The synthetic mix's weights, the digit-split tokenizer option, and the documents' match with eval-base's prompts.</summary>
public class CorpusMixTests
{
    /// <summary>A job that parses; the test model's max_position_embeddings needs a short seq_len.</summary>
    private static JobConfig Load(string body)
    {
        var (path, dir) = JobConfigTests.Write(body + "\nseq_len: 32\n");
        using (dir)
        {
            return JobConfig.Load(path, PretrainLoopTests.Corpus.Kinds);
        }
    }

    [Fact]
    public void WeightsAndSplitDigitsParse()
    {
        var job = Load("""
            tokenizer: train
            split_digits: false
            data:
              synthetic: [rev, sum]
              max_difficulty: 3
              task_weights: {sum: 3}
              difficulty_weights: [4, 2, 0]
            """);
        Assert.False(job.SplitDigits);
        Assert.Equal(3f, job.Data.TaskWeights!["sum"]);
        Assert.False(job.Data.TaskWeights.ContainsKey("rev"));
        Assert.Equal([4f, 2f, 0f], job.Data.DifficultyWeights!);

        var plain = Load("tokenizer: train\n");
        Assert.True(plain.SplitDigits);    // the default for new jobs
        Assert.Null(plain.Data.TaskWeights);
        Assert.Null(plain.Data.DifficultyWeights);
    }

    [Theory]
    [InlineData("data:\n  synthetic: [sum]\n  task_weights: {rev: 1}\n", "job.yaml:4:18: \"data.task_weights.rev\": not one of the job's synthetic tasks")]
    [InlineData("data:\n  synthetic: [sum]\n  task_weights: {sum: -1}\n", "\"data.task_weights.sum\"")]
    [InlineData("data:\n  synthetic: [sum]\n  task_weights: {sum: 0}\n", "gives every synthetic task weight 0")]
    [InlineData("data:\n  max_difficulty: 2\n  difficulty_weights: [1, 1, 1]\n", "job.yaml:4:3: \"data.difficulty_weights\" has 3 weights; it needs one per difficulty")]
    [InlineData("data:\n  max_difficulty: 2\n  difficulty_weights: [1, x]\n", "weight 2 must be a number >= 0, got \"x\"")]
    [InlineData("data:\n  max_difficulty: 2\n  difficulty_weights: [0, 0]\n", "every weight is 0")]
    [InlineData("tokenizer: bytes\nsplit_digits: true\n", "job.yaml:3:1: \"split_digits\" applies to \"tokenizer: train\" only")]
    [InlineData("tokenizer: train\nsplit_digits: maybe\n", "\"split_digits\" must be true or false")]
    public void BadWeightsAndSplitDigitsAreRejectedWithTheLine(string body, string message)
    {
        Assert.Contains(message, JobConfigTests.Reject(body).Message);
    }

    private static Dictionary<(string Kind, int Difficulty), int> Draw(DataSettings data, int n)
    {
        var counts = new Dictionary<(string, int), int>();
        var corpus = new SyntheticCorpus(new Dictionary<string, DocumentGenerator>
        {
            ["sum"] = (_, d) => $"sum {d}",
            ["rev"] = (_, d) => $"rev {d}",
            ["cat"] = (_, d) => $"cat {d}",
        });
        var stream = new DocumentStream(5, data, corpus);
        for (int i = 0; i < n; i++)
        {
            var (text, kind) = stream.Next();
            var key = (kind, int.Parse(text.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture));
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }

        return counts;
    }

    [Fact]
    public void TheStreamDrawsKindsAndDifficultiesInProportionToTheWeights()
    {
        var counts = Draw(new DataSettings
        {
            SyntheticTasks = ["sum", "rev", "cat"],
            SyntheticMaxDifficulty = 3,
            TaskWeights = new Dictionary<string, float> { ["sum"] = 2, ["cat"] = 0 },   // rev: 1 by default
            DifficultyWeights = [3, 1, 0],
        }, 8000);
        Assert.DoesNotContain(counts.Keys, k => k.Kind == "cat" || k.Difficulty == 3);
        double sum = counts.Where(p => p.Key.Kind == "sum").Sum(p => p.Value) / 8000.0;
        double easy = counts.Where(p => p.Key.Difficulty == 1).Sum(p => p.Value) / 8000.0;
        Assert.InRange(sum, 2 / 3.0 - 0.03, 2 / 3.0 + 0.03);
        Assert.InRange(easy, 0.75 - 0.03, 0.75 + 0.03);

        // Without weights: uniform over kinds and levels.
        var uniform = Draw(new DataSettings { SyntheticTasks = ["sum", "rev", "cat"], SyntheticMaxDifficulty = 2 }, 6000);
        Assert.Equal(6, uniform.Count);
        Assert.All(uniform.Values, c => Assert.InRange(c, 1000 - 120, 1000 + 120));
    }

    [Fact]
    public void WeightedStreamIsDeterministicAndResumesExactly()
    {
        var data = new DataSettings
        {
            SyntheticTasks = ["sum", "rev"], SyntheticMaxDifficulty = 2,
            TaskWeights = new Dictionary<string, float> { ["sum"] = 5 }, DifficultyWeights = [2, 1],
        };
        var a = new DocumentStream(9, data, PretrainLoopTests.Corpus);
        var all = Enumerable.Range(0, 40).Select(_ => a.Next()).ToList();
        var b = new DocumentStream(9, data, PretrainLoopTests.Corpus);
        b.Restore(new DataCursor { Documents = 25 });
        Assert.Equal(all.Skip(25), Enumerable.Range(0, 15).Select(_ => b.Next()));
    }

    [Fact]
    public void TrainingWithSplitDigitsGivesADigitSplittingTokenizer()
    {
        var docs = Enumerable.Range(0, 200).Select(i => $"{i * 7919} + {i * 104729} = {i * 7919 + i * 104729}").ToList();
        var split = BpeTextEncoder.Create("train", 300, () => docs, splitDigits: true);
        var grouped = BpeTextEncoder.Create("train", 300, () => docs, splitDigits: false);
        Assert.True(split.Tokenizer.SplitsDigits);
        Assert.False(grouped.Tokenizer.SplitsDigits);
        Assert.Equal(10, split.Encode("1234567890").Length);
        Assert.True(grouped.Encode("1234567890").Length < 10);
    }

    /// <summary>
    /// A training document for a task is exactly the prompt eval-base sends (the prompt messages in the chat format,
    /// then the assistant header, as <see cref="K2RL.Rollout.EnginePolicy"/> encodes them), followed by the worked
    /// solution and &lt;|im_end|&gt; (the policy's stop token); and the solution passes the environment eval-base scores with.
    /// </summary>
    [Theory]
    [InlineData("arithmetic")]
    [InlineData("countdown")]
    [InlineData("list_ops")]
    public async Task TrainingDocumentsContinueTheEvalPromptWithTheScoredAnswer(string kind)
    {
        var corpus = SyntheticCorpus.CreateDefault();
        var generator = GymRegistry.CreateDefault().Generators[kind];
        var tokenizer = BpeTokenizer.Train(Enumerable.Range(0, 200).Select(i => corpus.Generators[kind](i, 1 + i % 3)), 400,
            pattern: PreTokenizer.SplitDigitsPattern);
        var encoder = new BpeTextEncoder(tokenizer);
        for (int seed = 0; seed < 10; seed++)
        {
            int difficulty = 1 + seed % 3;
            var task = generator.Generate(seed, Split.Train, difficulty);
            int[] document = encoder.Encode(corpus.Generators[kind](seed, difficulty));
            int[] prompt = [.. ChatEncoder.Encode(tokenizer, task.PromptMessages(), addGenerationPrompt: true)];
            Assert.Equal(prompt, document.Take(prompt.Length));
            Assert.Equal(tokenizer.SpecialTokenId(ChatTokens.ImEnd), document[^1]);
            string answer = tokenizer.Decode(document.AsSpan(prompt.Length, document.Length - prompt.Length - 1));
            Assert.Equal(task.Solution, answer);
            await using var env = GymRegistry.CreateDefault().CreateEnvironment(kind);   // what eval-base scores with
            await env.ResetAsync(seed, new ResetOptions { Split = Split.Train, Difficulty = difficulty });
            var step = await env.StepAsync(answer);
            Assert.True(step.Info.Correct == true, $"{kind} d{difficulty}: the worked solution fails the eval's environment: {answer}");
        }
    }
}
