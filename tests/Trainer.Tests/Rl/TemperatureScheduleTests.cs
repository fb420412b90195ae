using K2RL.Common;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

public sealed class TemperatureScheduleTests
{
    [Theory]
    [InlineData("exponential")]
    [InlineData("linear")]
    [InlineData("cosine")]
    public void EveryKindStartsAtStartEndsAtEndAndDecaysMonotonically(string kind)
    {
        var s = new TemperatureSchedule { Kind = kind, Start = 1.2, End = 0.8, Horizon = 100 };
        Assert.Equal(1.2, s.At(0), 12);
        Assert.Equal(0.8, s.At(100), 12);
        Assert.Equal(0.8, s.At(250), 12);   // held at the floor past the horizon
        for (int i = 1; i <= 100; i++)
        {
            Assert.True(s.At(i) < s.At(i - 1), $"{kind}: T({i}) = {s.At(i)} is not below T({i - 1}) = {s.At(i - 1)}");
        }
    }

    [Fact]
    public void ShapesDifferAsSpecified()
    {
        var exp = new TemperatureSchedule { Kind = "exponential", Start = 1.2, End = 0.8, Horizon = 10 };
        var lin = exp with { Kind = "linear" };
        var cos = exp with { Kind = "cosine" };
        Assert.Equal(Math.Sqrt(1.2 * 0.8), exp.At(5), 12);   // geometric midpoint
        Assert.Equal(1.0, lin.At(5), 12);                     // arithmetic midpoint
        Assert.Equal(1.0, cos.At(5), 12);
        Assert.True(cos.At(2) > lin.At(2));                   // cosine lingers near the start
        Assert.Equal(1.2, (exp with { Kind = "constant" }).At(7), 12);
    }

    [Fact]
    public void AnUnknownKindIsAConfigError()
    {
        var e = Assert.Throws<ConfigException>(() => new TemperatureSchedule { Kind = "step" }.At(1));
        Assert.Contains("step", e.Message);
    }
}
