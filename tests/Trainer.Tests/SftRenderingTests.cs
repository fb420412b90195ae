using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Synthesis;
using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;
using K2RL.Trainer.Sft;

namespace K2RL.Trainer.Tests;

/// <summary>
/// SFT sequences are token for token what the rollout engine holds for the same conversation, and the loss mask is
/// exactly the tokens the policy generates there.
/// </summary>
public class SftRenderingTests
{
    private static readonly BpeTokenizer Tokenizer = BpeTokenizer.ByteLevel();
    private static readonly GymRegistry Registry = GymRegistry.CreateDefault();

    [Fact]
    public async Task ToolUseRecord_RendersAsTheEpisodeRunnerHoldsIt_AndTrainsExactlyTheGeneratedTokens()
    {
        // A real tool_use episode through the real EpisodeRunner, engine and environment; the decoder plays back the
        // record's assistant tokens (it only chooses what the policy generates: every context token comes from the
        // runner and the environment). Seed 3 at difficulty 2: two lookups, a calculator call, the answer.
        var record = SftFixture.Record(Registry, "tool_use", seed: 3, difficulty: 2);
        Assert.Equal(3, record.Messages.Count(m => m.Role == Role.Assistant));
        var sft = SftRenderer.Render(Tokenizer, record);

        var config = ModelConfig.Load(Path.Combine(K2RL.Tests.Shared.ExternalTools.RepoRoot(), "configs/models/k2-test.json"))
            with { VocabSize = 272, MaxPositionEmbeddings = 2048 };
        var model = new ModelDecoder(config, maxBatch: 2);
        model.LoadWeights(new float[model.ParameterCount]);   // the script decides every logit; the model keeps the cache
        var decoder = new ScriptDecoder(model, sft.Tokens, Tokenizer.SpecialTokenId(ChatTokens.ImEnd));
        var engine = new RolloutEngine(decoder, new EngineOptions { SampleableVocab = Tokenizer.VocabSize });
        var runner = new EpisodeRunner(engine, Tokenizer, Registry.CreateEnvironment, new EpisodeOptions { Seed = 1, MaxResponseTokens = 1000 });
        var batch = await runner.RunAsync([new EpisodeRequest("e0", "tool_use", 3, 2, 0)], [], 0f, long.MaxValue, CancellationToken.None);
        var t = Assert.Single(batch.Finished);
        Assert.False(t.Failed, t.Error);
        Assert.True(t.Correct, "the played-back transcript answers correctly: " + string.Join(" | ", t.Conversation.Select(m => m.Content)));
        Assert.Equal(3, t.Turns);

        Assert.Equal(t.Tokens, sft.Tokens);
        Assert.Equal(t.Generated, sft.Trained);
    }

    [Fact]
    public void Render_EqualsTheWholeConversationEncodedAtOnce_AndMasksHeadersAndNonAssistantTurns()
    {
        var record = SftFixture.Record(Registry, "tool_use", seed: 5, difficulty: 1);
        var s = SftRenderer.Render(Tokenizer, record);
        Assert.Equal(ChatEncoder.Encode(Tokenizer, record.Messages, record.Tools), s.Tokens);

        // The trained tokens, turn by turn, are each assistant message's encoding minus its header: content, the
        // tool-call section and <|im_end|>; nothing of the tool declarations, system, user or tool turns.
        int header = ChatEncoder.GenerationPrompt(Tokenizer).Length;
        var expected = record.Messages.Where(m => m.Role == Role.Assistant)
            .SelectMany(m => ChatEncoder.EncodeMessage(Tokenizer, m)[header..]).ToArray();
        Assert.Equal(expected, s.Tokens.Where((_, i) => s.Trained[i]).ToArray());
        int imEnd = Tokenizer.SpecialTokenId(ChatTokens.ImEnd);
        Assert.Equal(imEnd, s.Tokens[^1]);
        Assert.True(s.Trained[^1]);
        Assert.Contains(Tokenizer.SpecialTokenId(ChatTokens.ToolCallsSectionBegin), s.Tokens.Where((_, i) => s.Trained[i]));
        // Every <|im_end|> closing a non-assistant turn is context; each assistant header is context.
        int assistantHeader = Tokenizer.SpecialTokenId(ChatTokens.ImAssistant);
        Assert.All(Enumerable.Range(0, s.Tokens.Length).Where(i => s.Tokens[i] == assistantHeader), i => Assert.False(s.Trained[i]));
        Assert.Equal(record.Messages.Count(m => m.Role == Role.Assistant), Enumerable.Range(0, s.Tokens.Length).Count(i => s.Tokens[i] == imEnd && s.Trained[i]));
    }

    [Fact]
    public void SingleTurnRecord_TrainsOnlyTheAnswerTurn()
    {
        var record = SftFixture.Record(Registry, "arithmetic", seed: 1, difficulty: 1);
        var s = SftRenderer.Render(Tokenizer, record);
        var prompt = ChatEncoder.Encode(Tokenizer, record.Messages.Take(record.Messages.Count - 1).ToList(), addGenerationPrompt: true);
        Assert.Equal(prompt, s.Tokens[..prompt.Length]);
        Assert.All(s.Trained[..prompt.Length], Assert.False);
        Assert.All(s.Trained[prompt.Length..], Assert.True);
        Assert.Equal(Tokenizer.Decode(s.Tokens[prompt.Length..^1]), record.Messages[^1].Content);
    }

    /// <summary>
    /// Wraps a real decoder (which keeps the cache) and replaces its logits: while a sequence's tokens are a prefix of
    /// <c>script</c> the next script token wins; otherwise &lt;|im_end|&gt; does (the episode ends and the test fails).
    /// </summary>
    private sealed class ScriptDecoder(IDecoder inner, int[] script, int imEnd) : DecoderDecorator(inner)
    {
        private readonly Dictionary<IDecoderSequence, List<int>> seen = new(ReferenceEqualityComparer.Instance);

        public override void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits)
        {
            Inner.Prefill(seq, tokens, lastLogits);
            Force(seq, tokens, lastLogits);
        }

        public override void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits)
        {
            Inner.PrefillBatch(seqs, tokens, counts, lastLogits);
            int at = 0;
            for (int i = 0; i < seqs.Count; i++)
            {
                Force(seqs[i], tokens.Slice(at, counts[i]), lastLogits.Slice(i * VocabSize, VocabSize));
                at += counts[i];
            }
        }

        public override void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits)
        {
            Inner.DecodeStep(seqs, tokens, logits);
            for (int i = 0; i < seqs.Count; i++)
            {
                Force(seqs[i], tokens.Slice(i, 1), logits.Slice(i * VocabSize, VocabSize));
            }
        }

        private void Force(IDecoderSequence seq, ReadOnlySpan<int> appended, Span<float> logits)
        {
            if (!seen.TryGetValue(seq, out var history))
            {
                seen[seq] = history = [];
            }

            history.AddRange(appended.ToArray());
            bool onScript = history.Count < script.Length && history.SequenceEqual(script.Take(history.Count));
            logits.Fill(-30f);
            logits[onScript ? script[history.Count] : imEnd] = 30f;
        }
    }
}
