using K2RL.Common;
using K2RL.Model;

namespace K2RL.Trainer.Pretraining;

/// <summary>Builds the model the pretraining job trains.</summary>
public static class TrainableModels
{
    public static ITrainableModel Create(ModelConfig config) =>
        throw new K2Exception("the K2 model (training forward/backward) is not in this build yet");
}
