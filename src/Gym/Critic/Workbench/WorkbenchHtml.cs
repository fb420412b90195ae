using System.Net;
using System.Text;

namespace K2RL.Gym.Critic.Workbench;

/// <summary>
/// The workbench's report as one self-contained HTML file (inline CSS and script, nothing fetched): the overall
/// statistics, then per prompt the responses side by side, each judge's verdict matrix, scores and reasoning. A
/// script filters the prompts by rubric and by kind of disagreement (between the judges, between the two orders of a
/// pair, with the verifier) and shows how many are shown; the filter state lives in the URL's fragment
/// (<c>report.html#rubric=NAME&amp;disagreement=judges</c>), so a filtered view can be linked.
/// </summary>
public static class WorkbenchHtml
{
    /// <summary>The report; <paramref name="title"/> names what was judged (input file, rubric directory).</summary>
    public static string Render(WorkbenchResult result, string title)
    {
        var sb = new StringBuilder();
        sb.Append("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title>\n<style>")
            .Append(Css).Append("</style></head>\n<body>\n<h1>Rubric workbench</h1>\n<p class=\"subtitle\">").Append(E(title)).Append("</p>\n");
        Overall(sb, result);
        Filters(sb, result);
        sb.Append("<main>\n");
        for (int i = 0; i < result.Prompts.Count; i++)
        {
            Prompt(sb, result.Prompts[i], i);
        }

        sb.Append("</main>\n<script>").Append(Script).Append("</script>\n</body></html>\n");
        return sb.ToString();
    }

    private static void Overall(StringBuilder sb, WorkbenchResult result)
    {
        sb.Append("<section id=\"overall\"><h2>Overall</h2><table><tr><th>judge</th><th>comparisons</th><th>unparseable</th>")
            .Append("<th>same winner in both orders</th><th>A wins</th><th>critic accuracy (verifier)</th></tr>\n");
        foreach (var s in result.Judges)
        {
            string bias = result.Options.BothOrders
                ? $"{s.Positions.Consistent} of {s.Positions.Pairs} ({WorkbenchReport.Pct(s.Positions.Agreement)})"
                : "not asked (--both-orders)";
            string accuracy = s.Accuracy is { } c ? $"{c.Agreed} of {c.Agreed + c.Disagreed} ({WorkbenchReport.Pct(c.Accuracy)})" : "no rewards";
            sb.Append("<tr class=\"judge-summary\"><td>").Append(E(s.Judge)).Append("</td><td>").Append(s.Comparisons)
                .Append("</td><td class=\"unparseable\">").Append(s.Unparseable).Append(s.Failure is null ? "" : $" <small>last: {E(s.Failure)}</small>")
                .Append("</td><td>").Append(bias).Append("</td><td>").Append($"{s.Positions.FirstWins} of {s.Positions.Decided}")
                .Append("</td><td>").Append(accuracy).Append("</td></tr>\n");
        }

        sb.Append("</table>\n");
        if (result.Agreement is { } a)
        {
            sb.Append("<p id=\"agreement\">Agreement between the judges: ").Append($"{a.Equal} of {a.Compared} comparisons equal ({WorkbenchReport.Pct(a.Share)}), ")
                .Append($"Cohen's κ = {WorkbenchReport.F(a.Kappa)}; {a.Excluded} left out (a judge had no verdict)</p>\n");
        }

        sb.Append("</section>\n");
    }

    private static void Filters(StringBuilder sb, WorkbenchResult result)
    {
        sb.Append("<div id=\"filters\"><label>Rubric <select id=\"rubric-filter\"><option value=\"\">all rubrics</option>");
        foreach (string r in result.RubricNames)
        {
            sb.Append("<option value=\"").Append(E(r)).Append("\">").Append(E(r)).Append("</option>");
        }

        sb.Append("</select></label> <label>Disagreement <select id=\"disagreement-filter\"><option value=\"\">any prompt</option>")
            .Append("<option value=\"any\">some disagreement</option><option value=\"judges\">between the judges</option>")
            .Append("<option value=\"orders\">between the two orders</option><option value=\"verifier\">with the verifier</option></select></label> ")
            .Append($"<span id=\"shown-count\">{result.Prompts.Count} of {result.Prompts.Count} prompts shown</span></div>\n");
    }

    private static void Prompt(StringBuilder sb, PromptResult p, int index)
    {
        var flags = new List<string>();
        if (p.JudgesDisagree)
        {
            flags.Add("judges");
        }

        if (p.OrdersDisagree)
        {
            flags.Add("orders");
        }

        if (p.VerifierDisagrees)
        {
            flags.Add("verifier");
        }

        sb.Append($"<section class=\"prompt\" id=\"prompt-{index + 1}\" data-id=\"{E(p.Item.Id)}\" data-rubrics=\"|")
            .Append(E(string.Join("|", p.Rubrics.Select(r => r.Name)))).Append("|\" data-disagreement=\"").Append(string.Join(' ', flags)).Append("\">\n")
            .Append("<h2>").Append(E(p.Item.Id)).Append($" <small>line {p.Item.Line}; tags [{E(string.Join(", ", p.Tags))}]")
            .Append(flags.Count > 0 ? $"; disagreement: {string.Join(", ", flags)}" : "").Append("</small></h2>\n<p class=\"rubrics\">Rubrics: ");
        foreach (var r in p.Rubrics)
        {
            sb.Append($"<span class=\"rubric{(r.Mandatory ? " mandatory" : "")}\" title=\"{E(r.Description)}\">").Append(E(r.Name))
                .Append(r.Mandatory ? " (mandatory)" : "").Append("</span> ");
        }

        sb.Append("</p>\n<pre class=\"prompt-text\">").Append(E(p.Item.Prompt)).Append("</pre>\n<div class=\"responses\">");
        for (int i = 0; i < p.Item.Responses.Count; i++)
        {
            sb.Append($"<div class=\"response\"><h3>#{i + 1}")
                .Append(p.Item.Rewards is { } r ? $" <span class=\"reward\">verifier {WorkbenchReport.F(r[i])}</span>" : "")
                .Append("</h3><pre>").Append(E(p.Item.Responses[i])).Append("</pre></div>");
        }

        sb.Append("</div>\n");
        foreach (var j in p.Judges)
        {
            Judge(sb, p, j);
        }

        sb.Append("</section>\n");
    }

    private static void Judge(StringBuilder sb, PromptResult p, JudgeOnPrompt j)
    {
        int k = p.Item.Responses.Count;
        var byOrder = j.Comparisons.ToDictionary(c => (c.First, c.Second));
        sb.Append("<div class=\"judge\"><h3>").Append(E(j.Judge)).Append("</h3><div class=\"tables\">")
            .Append("<table class=\"matrix\"><caption>winner: row shown as A, column as B</caption><tr><th></th>");
        for (int b = 0; b < k; b++)
        {
            sb.Append($"<th>B = #{b + 1}</th>");
        }

        sb.Append("</tr>");
        for (int a = 0; a < k; a++)
        {
            sb.Append($"<tr><th>A = #{a + 1}</th>");
            for (int b = 0; b < k; b++)
            {
                sb.Append(a == b ? "<td class=\"self\">—</td>"
                    : byOrder.TryGetValue((a, b), out var c) ? Cell(c) : "<td class=\"not-asked\"></td>");
            }

            sb.Append("</tr>");
        }

        sb.Append("</table>\n<table class=\"scores\"><tr><th>response</th><th>win rate</th><th>Bradley–Terry</th><th>strength</th>")
            .Append(p.Item.Rewards is null ? "" : "<th>verifier</th>").Append("</tr>");
        for (int i = 0; i < k; i++)
        {
            sb.Append($"<tr><td>#{i + 1}</td><td>{WorkbenchReport.F(j.Scores.WinRate[i])}</td><td>{WorkbenchReport.F(j.Scores.BradleyTerry[i])}</td>")
                .Append($"<td>{WorkbenchReport.F(j.Scores.Strength[i])}</td>")
                .Append(p.Item.Rewards is { } r ? $"<td>{WorkbenchReport.F(r[i])}</td>" : "").Append("</tr>");
        }

        sb.Append($"</table></div>\n<details class=\"reasoning\"><summary>Reasoning: {j.Comparisons.Count} comparisons, ")
            .Append($"<span class=\"unparseable-count\">{j.Scores.Unparseable}</span> unparseable</summary><ol>");
        foreach (var c in j.Comparisons)
        {
            sb.Append($"<li class=\"comparison\" data-verdict=\"{WorkbenchReport.VerdictName(c.Verdict)}\"><b>#{c.First + 1} (A) vs #{c.Second + 1} (B): ")
                .Append(c.Verdict switch { PairVerdict.Tie => "tie", PairVerdict.Unparseable => "no verdict", _ => $"#{c.Winner + 1} wins" }).Append("</b>")
                .Append(c.Problem is null ? "" : $" <span class=\"problem\">{E(c.Problem)}</span>")
                .Append(c.Text is null ? "" : $"<pre>{E(c.Text)}</pre>").Append("</li>");
        }

        sb.Append("</ol></details></div>\n");
    }

    private static string Cell(JudgedComparison c) => c.Verdict switch
    {
        PairVerdict.Unparseable => $"<td class=\"none\" title=\"{E(c.Problem ?? "")}\">?</td>",
        PairVerdict.Tie => "<td class=\"tie\">tie</td>",
        _ => $"<td class=\"{(c.Verdict == PairVerdict.A ? "a-wins" : "b-wins")}\">#{c.Winner + 1}</td>",
    };

    private static string E(string text) => WebUtility.HtmlEncode(text);

    private const string Css = """
        body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:110em}
        h1{margin-bottom:0}.subtitle{color:#666;margin-top:.2em}
        table{border-collapse:collapse;margin:.5em 1em .5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:center}
        #filters{position:sticky;top:0;background:#f4f4f4;padding:.5em;border:1px solid #ddd;margin:1em 0}
        #shown-count{margin-left:1em;font-weight:bold}
        section.prompt{border-top:2px solid #888;margin-top:1.5em;padding-top:.5em}
        .responses{display:grid;grid-template-columns:repeat(auto-fit,minmax(16em,1fr));gap:.5em}
        .response{border:1px solid #ccc;padding:.3em .6em;background:#fafafa}
        pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0}.prompt-text{background:#eef3fb;padding:.5em}
        .rubric{display:inline-block;border:1px solid #99b;border-radius:3px;padding:0 .4em;margin:.1em}.rubric.mandatory{border-color:#c33;color:#a00}
        .tables{display:flex;flex-wrap:wrap}.a-wins{background:#dfe}.b-wins{background:#def}.tie{background:#eee}.none{background:#fdd}
        .not-asked{background:repeating-linear-gradient(45deg,#fff,#fff 4px,#eee 4px,#eee 8px)}
        .problem{color:#a00}.reward{font-weight:normal;color:#060}details.reasoning li{margin:.4em 0}
        """;

    private const string Script = """
        (function () {
          var rubric = document.getElementById('rubric-filter');
          var disagreement = document.getElementById('disagreement-filter');
          var prompts = Array.prototype.slice.call(document.querySelectorAll('section.prompt'));
          function apply() {
            var shown = 0;
            prompts.forEach(function (p) {
              var flags = p.getAttribute('data-disagreement').split(' ').filter(function (f) { return f; });
              var ok = (!rubric.value || p.getAttribute('data-rubrics').indexOf('|' + rubric.value + '|') >= 0)
                && (!disagreement.value || (disagreement.value === 'any' ? flags.length > 0 : flags.indexOf(disagreement.value) >= 0));
              p.hidden = !ok;
              if (ok) { shown++; }
            });
            document.getElementById('shown-count').textContent = shown + ' of ' + prompts.length + ' prompts shown';
            var state = new URLSearchParams();
            if (rubric.value) { state.set('rubric', rubric.value); }
            if (disagreement.value) { state.set('disagreement', disagreement.value); }
            try { history.replaceState(null, '', '#' + state.toString()); } catch (e) { /* a file: URL may refuse; the filter still applies */ }
          }
          function choose(select, value) {
            for (var i = 0; i < select.options.length; i++) { if (select.options[i].value === value) { select.value = value; } }
          }
          var initial = new URLSearchParams(location.hash.slice(1));
          choose(rubric, initial.get('rubric') || '');
          choose(disagreement, initial.get('disagreement') || '');
          rubric.addEventListener('change', apply);
          disagreement.addEventListener('change', apply);
          apply();
        })();
        """;
}
