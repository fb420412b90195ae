using System.Runtime.InteropServices;
using Serilog;

namespace K2RL.Cli.Commands;

/// <summary>
/// SIGINT and SIGTERM, turned into a cancellation a training loop checks between steps: the process keeps running
/// until the loop has written its checkpoint and returned. Used by <c>pretrain</c> and <c>rl</c>.
/// </summary>
internal sealed class StopSignal : IDisposable
{
    private readonly CancellationTokenSource stop = new();
    private readonly PosixSignalRegistration sigint;
    private readonly PosixSignalRegistration sigterm;

    /// <param name="log">Where the first signal is reported.</param>
    /// <param name="what">What happens next, for the log line ("stopping after this step and writing a checkpoint").</param>
    public StopSignal(ILogger log, string what)
    {
        void OnSignal(PosixSignalContext ctx)
        {
            ctx.Cancel = true;   // keep running until the checkpoint is written
            if (!stop.IsCancellationRequested)
            {
                log.Warning("{Signal}: {What}", ctx.Signal, what);
                stop.Cancel();
            }
        }

        sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    public CancellationToken Token => stop.Token;

    public void Dispose()
    {
        sigint.Dispose();
        sigterm.Dispose();
        stop.Dispose();
    }
}
