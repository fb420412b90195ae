using System.Text.RegularExpressions;
using K2RL.Common;
using K2RL.Model;

namespace K2RL.Trainer.Optim;

/// <summary>Which update a tensor gets.</summary>
public enum ParamGroup
{
    /// <summary>Muon: a 2-D hidden matrix (attention projections, dense and expert FFN, router gate).</summary>
    Muon,

    /// <summary>AdamW: embeddings, lm_head, norm weights (and every matrix when AdamW is selected).</summary>
    AdamW,

    /// <summary>No optimizer: the router's correction bias, moved only by the balancing rule.</summary>
    BalanceRule,
}

/// <summary>One row of the routing table: a full-name regex, its group, and why.</summary>
public sealed record RoutingRule(string Pattern, ParamGroup Group, string Why)
{
    public Regex Regex { get; } = new("^" + Pattern + "$", RegexOptions.CultureInvariant);
}

/// <summary>
/// The Muon/AdamW split as data (SPEC §2, STYLE "declarative table"). <see cref="Resolve"/> checks it
/// against a layout: every tensor matched by exactly one rule, unknown names rejected, Muon only on 2-D.
/// </summary>
public static class ParameterRouting
{
    private const string L = @"model\.layers\.\d+\.";

    public static readonly IReadOnlyList<RoutingRule> Table =
    [
        new(@"model\.embed_tokens\.weight", ParamGroup.AdamW, "embedding"),
        new(@"lm_head\.weight", ParamGroup.AdamW, "output head"),
        new(@"model\.norm\.weight", ParamGroup.AdamW, "final norm"),
        new(L + @"(input_layernorm|post_attention_layernorm)\.weight", ParamGroup.AdamW, "block norms"),
        new(L + @"self_attn\.(q_a_layernorm|kv_a_layernorm)\.weight", ParamGroup.AdamW, "MLA latent norms"),
        new(L + @"self_attn\.(q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)\.weight", ParamGroup.Muon, "attention matrices"),
        new(L + @"mlp\.(gate_proj|up_proj|down_proj)\.weight", ParamGroup.Muon, "dense SwiGLU"),
        new(L + @"mlp\.shared_experts\.(gate_proj|up_proj|down_proj)\.weight", ParamGroup.Muon, "shared expert"),
        new(L + @"mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj)\.weight", ParamGroup.Muon, "routed expert, each matrix on its own"),
        new(L + @"mlp\.gate\.weight", ParamGroup.Muon, "router gate"),
        new(L + @"mlp\.gate\.e_score_correction_bias", ParamGroup.BalanceRule, "aux-loss-free bias: balancing rule only"),
    ];

    /// <summary>
    /// The group of every tensor of <paramref name="layout"/>, in buffer order. With
    /// <paramref name="muon"/> false every Muon tensor goes to AdamW (the comparison baseline).
    /// Throws <see cref="ConfigException"/> naming the tensor when the table does not cover it exactly once.
    /// </summary>
    public static ParamGroup[] Resolve(ParameterLayout layout, bool muon = true, IReadOnlyList<RoutingRule>? table = null)
    {
        table ??= Table;
        var groups = new ParamGroup[layout.Tensors.Count];
        for (int i = 0; i < layout.Tensors.Count; i++)
        {
            var t = layout.Tensors[i];
            var hits = table.Where(r => r.Regex.IsMatch(t.Name)).ToList();
            if (hits.Count == 0)
            {
                throw new ConfigException($"optimizer routing: tensor \"{t.Name}\" matches no rule of the table (unknown name)");
            }

            if (hits.Count > 1)
            {
                throw new ConfigException(
                    $"optimizer routing: tensor \"{t.Name}\" matches {hits.Count} rules ({string.Join(", ", hits.Select(h => h.Pattern))})");
            }

            var g = hits[0].Group;
            if (g == ParamGroup.Muon && !t.IsMatrix)
            {
                throw new ConfigException($"optimizer routing: Muon rule \"{hits[0].Pattern}\" matched \"{t.Name}\" of shape {t.ShapeText}, not a matrix");
            }

            if (g == ParamGroup.BalanceRule && !t.IsRoutingBias)
            {
                throw new ConfigException($"optimizer routing: \"{t.Name}\" is routed to the balancing rule but is not a correction bias");
            }

            groups[i] = g == ParamGroup.Muon && !muon ? ParamGroup.AdamW : g;
        }

        return groups;
    }
}
