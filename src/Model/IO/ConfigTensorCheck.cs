using System.Globalization;

namespace K2RL.Model.IO;

/// <summary>
/// Checks a checkpoint's config.json against the shapes in its model.safetensors before any tensor is
/// compared one by one, so that a wrong config is reported by its key ("hidden_size is 48, the tensors say
/// 32") rather than by the first tensor that happens to disagree. Each config value that the tensors
/// determine is read back from them (the MLA head sizes by solving the q_b_proj / kv_b_proj / o_proj shapes)
/// and compared. Values the tensors cannot tell (rope_theta, routed_scaling_factor, ...) are not checked.
/// </summary>
internal static class ConfigTensorCheck
{
    /// <summary>Throws <see cref="K2RL.Common.CorruptFileException"/> naming config.json and the first key that disagrees.</summary>
    public static void Check(ModelConfig config, SafetensorsSet tensors, string configPath)
    {
        foreach (var (key, fromTensors, evidence) in Infer(tensors))
        {
            object? inConfig = ConfigValue(config, key);
            if (!Equals(inConfig, fromTensors))
            {
                throw CheckpointErrors.ConfigKey(configPath, key,
                    $"is {Text(inConfig)}, but model.safetensors says {Text(fromTensors)} ({evidence}): the config does not match the weights");
            }
        }
    }

    private static string Text(object? v) => v switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };

    private static object? ConfigValue(ModelConfig c, string key) => key switch
    {
        "vocab_size" => (long)c.VocabSize,
        "hidden_size" => (long)c.HiddenSize,
        "num_hidden_layers" => (long)c.NumHiddenLayers,
        "tie_word_embeddings" => c.TieWordEmbeddings,
        "q_lora_rank" => (long?)c.QLoraRank,
        "kv_lora_rank" => (long)c.KvLoraRank,
        "qk_rope_head_dim" => (long)c.QkRopeHeadDim,
        "num_attention_heads" => (long)c.NumAttentionHeads,
        "qk_nope_head_dim" => (long)c.QkNopeHeadDim,
        "v_head_dim" => (long)c.VHeadDim,
        "first_k_dense_replace" => (long)c.FirstKDenseReplace,
        "intermediate_size" => (long)c.IntermediateSize,
        "n_routed_experts" => (long)c.NRoutedExperts,
        "moe_intermediate_size" => (long)c.MoeIntermediateSize,
        "n_shared_experts" => (long)c.NSharedExperts,
        _ => throw new ArgumentOutOfRangeException(nameof(key), key, "no such inferred key"),
    };

    /// <summary>Config values read back from tensor shapes, in the order they are checked, each with the tensor it came from.</summary>
    private static IEnumerable<(string Key, object? Value, string Evidence)> Infer(SafetensorsSet h)
    {
        long[]? Shape(string name) => h.ShapeOf(name);
        string Ev(string name) => $"\"{name}\" has shape {CheckpointErrors.Shape(Shape(name)!)}";

        const string embed = "model.embed_tokens.weight";
        if (Shape(embed) is { Length: 2 } es)
        {
            yield return ("vocab_size", es[0], Ev(embed));
            yield return ("hidden_size", es[1], Ev(embed));
            yield return ("tie_word_embeddings", !h.Contains("lm_head.weight"),
                h.Contains("lm_head.weight") ? "it holds \"lm_head.weight\"" : "it holds no \"lm_head.weight\"");
        }

        var layers = h.Names
            .Select(n => n.Split('.'))
            .Where(p => p.Length > 3 && p[0] == "model" && p[1] == "layers")
            .Select(p => int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int i) ? i : -1)
            .Where(i => i >= 0)
            .ToList();
        if (layers.Count > 0)
        {
            yield return ("num_hidden_layers", (long)layers.Max() + 1, $"its highest layer is model.layers.{layers.Max()}");
        }

        const string a = "model.layers.0.self_attn.";
        if (Shape(a + "q_a_proj.weight") is { Length: 2 } qa)
        {
            yield return ("q_lora_rank", (long?)qa[0], Ev(a + "q_a_proj.weight"));
        }
        else if (h.Contains(a + "q_proj.weight"))
        {
            yield return ("q_lora_rank", (long?)null, $"it holds \"{a}q_proj.weight\" (no low-rank query)");
        }

        string qName = h.Contains(a + "q_b_proj.weight") ? a + "q_b_proj.weight" : a + "q_proj.weight";
        if (Shape(a + "kv_a_layernorm.weight") is { Length: 1 } kn && Shape(a + "kv_a_proj_with_mqa.weight") is { Length: 2 } kva)
        {
            long r = kn[0], dr = kva[0] - r;
            yield return ("kv_lora_rank", r, Ev(a + "kv_a_layernorm.weight"));
            yield return ("qk_rope_head_dim", dr, Ev(a + "kv_a_proj_with_mqa.weight") + $" = kv_lora_rank + rope dim");

            // q: H(Dn+Dr) rows; kv_b: H(Dn+Dv) rows; o: H·Dv columns → H·Dn, H·Dr, then H, Dn, Dv.
            if (dr > 0 && Shape(qName) is { Length: 2 } q && Shape(a + "kv_b_proj.weight") is { Length: 2 } kvb
                && Shape(a + "o_proj.weight") is { Length: 2 } o)
            {
                long hDn = kvb[0] - o[1], hDr = q[0] - hDn;
                string ev = $"solved from {Ev(qName)}, {Ev(a + "kv_b_proj.weight")}, {Ev(a + "o_proj.weight")}";
                if (hDn > 0 && hDr > 0 && hDr % dr == 0)
                {
                    long heads = hDr / dr;
                    if (hDn % heads == 0 && o[1] % heads == 0)
                    {
                        yield return ("num_attention_heads", heads, ev);
                        yield return ("qk_nope_head_dim", hDn / heads, ev);
                        yield return ("v_head_dim", o[1] / heads, ev);
                    }
                }
            }
        }

        if (layers.Count > 0)
        {
            int firstMoe = Enumerable.Range(0, layers.Max() + 1)
                .FirstOrDefault(i => h.Contains($"model.layers.{i}.mlp.gate.weight"), -1);
            int firstDense = Enumerable.Range(0, layers.Max() + 1)
                .FirstOrDefault(i => h.Contains($"model.layers.{i}.mlp.gate_proj.weight"), -1);
            if (firstMoe > 0 && Enumerable.Range(0, firstMoe).All(i => h.Contains($"model.layers.{i}.mlp.gate_proj.weight")))
            {
                yield return ("first_k_dense_replace", (long)firstMoe, $"model.layers.{firstMoe} is the first with \"mlp.gate.weight\"");
            }

            if (firstDense >= 0 && Shape($"model.layers.{firstDense}.mlp.gate_proj.weight") is { Length: 2 } dense)
            {
                yield return ("intermediate_size", dense[0], Ev($"model.layers.{firstDense}.mlp.gate_proj.weight"));
            }

            if (firstMoe >= 0)
            {
                string m = $"model.layers.{firstMoe}.mlp.";
                if (Shape(m + "gate.weight") is { Length: 2 } gate)
                {
                    yield return ("n_routed_experts", gate[0], Ev(m + "gate.weight"));
                }

                if (Shape(m + "experts.0.gate_proj.weight") is { Length: 2 } expert)
                {
                    long f = expert[0];
                    yield return ("moe_intermediate_size", f, Ev(m + "experts.0.gate_proj.weight"));
                    if (Shape(m + "shared_experts.gate_proj.weight") is { Length: 2 } shared)
                    {
                        if (f > 0 && shared[0] % f == 0)
                        {
                            yield return ("n_shared_experts", shared[0] / f, Ev(m + "shared_experts.gate_proj.weight") + " = n_shared_experts × moe_intermediate_size");
                        }
                    }
                    else
                    {
                        yield return ("n_shared_experts", 0L, $"it holds no \"{m}shared_experts\" tensors");
                    }
                }
            }
        }
    }
}
