using System.Diagnostics;
using System.Text.RegularExpressions;
using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// The workbench's HTML report opened in headless Chromium (Debian's <c>chromium</c>; installed as root when missing,
/// else the test fails saying so): the DOM after the page's script ran shows the filters applied (sections hidden,
/// the count of prompts shown), the verdict matrices, and response text as text.
/// </summary>
public sealed class WorkbenchHtmlChromiumIntegrationTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-report-").FullName;

    /// <summary>q1: the judges disagree (the second always says A there); q2: tagged code; q3: a response that is markup.</summary>
    private static readonly IReadOnlyList<JudgeInputItem> Items =
    [
        new JudgeInputItem { Line = 1, Id = "q1", Prompt = "first?", Responses = ["a", "bbb", "cc"], Rewards = [0, 1, 0.5] },
        new JudgeInputItem { Line = 2, Id = "q2", Prompt = "second?", Responses = ["xx", "y"], Tags = ["code"] },
        new JudgeInputItem
        {
            Line = 3, Id = "q3", Prompt = "third <b>bold</b>?", Responses = ["<script>document.title='pwned'</script>", "short"], Rewards = [1, 0],
        },
    ];

    private static string Longer(string prompt)
    {
        var (a, b) = CriticProtocol.ResponsesOf(prompt);
        return a.Length == b.Length ? "Verdict: [[TIE]]" : a.Length > b.Length ? "Verdict: [[A]]" : "Verdict: [[B]]";
    }

    private async Task<string> WriteReport()
    {
        var judges = new[]
        {
            new WorkbenchJudge("longer", new ScriptedJudge(Longer)),
            new WorkbenchJudge("biased-on-q1", new ScriptedJudge(p => p.Contains("first?") ? "First one.\nVerdict: [[A]]" : Longer(p))),
        };
        var result = await JudgeWorkbench.RunAsync(JudgeWorkbenchTests.Rubrics, Items, judges, new WorkbenchOptions { BothOrders = true });
        string path = Path.Combine(dir, "report.html");
        File.WriteAllText(path, WorkbenchHtml.Render(result, "test input judged against test rubrics"));
        return path;
    }

    /// <summary>The DOM Chromium holds after loading the page (its script has run).</summary>
    private string RenderedDom(string path, string fragment)
    {
        string chromium = ExternalTools.Require("chromium", "chromium");
        var start = new ProcessStartInfo(chromium)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string arg in new[]
                 {
                     "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--user-data-dir=" + Path.Combine(dir, "profile"),
                     "--virtual-time-budget=5000", "--dump-dom", new Uri(path).AbsoluteUri + fragment,
                 })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"chromium did not finish rendering {path} in 90 s");
        }

        Assert.True(process.ExitCode == 0, $"chromium exited with {process.ExitCode}: {stderr.Result}");
        Assert.Contains("</html>", stdout.Result);
        return stdout.Result;
    }

    /// <summary>Each prompt section's id and whether the page hides it.</summary>
    private static Dictionary<string, bool> Visible(string dom) =>
        Regex.Matches(dom, "<section class=\"prompt\"[^>]*>").ToDictionary(
            m => Regex.Match(m.Value, "data-id=\"([^\"]*)\"").Groups[1].Value,
            m => !Regex.IsMatch(m.Value, @"\shidden(=""[^""]*"")?[\s>]"));

    private static string ShownCount(string dom) => Regex.Match(dom, "<span id=\"shown-count\">([^<]*)</span>").Groups[1].Value;

    private static string Section(string dom, string id)
    {
        int start = dom.IndexOf($"data-id=\"{id}\"", StringComparison.Ordinal);
        int end = dom.IndexOf("</section>", start, StringComparison.Ordinal);
        return dom[start..end];
    }

    [Fact]
    public async Task FiltersByRubricAndDisagreementAreAppliedByThePage()
    {
        string path = await WriteReport();
        string code = RenderedDom(path, "#rubric=tests_pass");
        Assert.Equal("1 of 3 prompts shown", ShownCount(code));
        Assert.Equal(new Dictionary<string, bool> { ["q1"] = false, ["q2"] = true, ["q3"] = false }, Visible(code));

        string judges = RenderedDom(path, "#disagreement=judges");
        Assert.Equal("1 of 3 prompts shown", ShownCount(judges));
        Assert.Equal(new Dictionary<string, bool> { ["q1"] = true, ["q2"] = false, ["q3"] = false }, Visible(judges));

        string both = RenderedDom(path, "#rubric=tests_pass&disagreement=any");
        Assert.Equal("0 of 3 prompts shown", ShownCount(both));
        Assert.All(Visible(both).Values, Assert.False);
    }

    [Fact]
    public async Task ThePageShowsMatricesScoresReasoningAndResponsesAsText()
    {
        string dom = RenderedDom(await WriteReport(), "");
        Assert.Equal("3 of 3 prompts shown", ShownCount(dom));
        Assert.All(Visible(dom).Values, Assert.True);

        // the response that is markup is shown as text, and its script never ran
        Assert.Contains("<title>test input judged against test rubrics</title>", dom);
        Assert.Contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;", Section(dom, "q3"));
        Assert.Contains("third &lt;b&gt;bold&lt;/b&gt;?", dom);

        // q1, both orders: "longer" has 3 A wins and 3 B wins; "biased-on-q1" 6 A wins; every cell has a verdict
        string q1 = Section(dom, "q1");
        Assert.Equal(9, Regex.Matches(q1, "<td class=\"a-wins\">").Count);
        Assert.Equal(3, Regex.Matches(q1, "<td class=\"b-wins\">").Count);
        Assert.Empty(Regex.Matches(q1, "<td class=\"not-asked\">"));
        Assert.Contains("disagreement: judges, orders, verifier", q1);
        Assert.Contains("First one.\nVerdict: [[A]]", q1);
        Assert.Contains("<span class=\"rubric mandatory\" title=\"No praise.\">no_praise (mandatory)</span>", q1);
        Assert.Contains("<tr><td>#2</td><td>1</td>", q1);   // response #2 (the longest) wins every comparison of "longer"

        // overall: position bias of each judge and the agreement between them
        Assert.Matches("<td>longer</td><td>10</td><td class=\"unparseable\">0</td><td>5 of 5 \\(100 %\\)</td>", dom);
        Assert.Matches("<td>biased-on-q1</td><td>10</td><td class=\"unparseable\">0</td><td>2 of 5 \\(40 %\\)</td>", dom);
        Assert.Contains("Agreement between the judges: 7 of 10 comparisons equal (70 %)", dom);
    }

    [Fact]
    public async Task TheReportFetchesNothing()
    {
        string html = File.ReadAllText(await WriteReport());
        Assert.DoesNotMatch("(src|href)\\s*=", html);
        Assert.DoesNotContain("<link", html);
        Assert.DoesNotContain("@import", html);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
