using System.Net;

namespace K2RL.Common.Rpc;

/// <summary>
/// A request body written while the call runs: HttpClient hands us its stream, the call writes frames
/// into it, and <see cref="Complete"/> ends the request stream (END_STREAM, a half-close).
/// </summary>
internal sealed class PushStreamContent : HttpContent
{
    private readonly TaskCompletionSource<Stream> stream = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<Stream> RequestStream => stream.Task;

    public void Complete() => done.TrySetResult();

    public void Abort()
    {
        stream.TrySetCanceled();
        done.TrySetCanceled();
    }

    protected override Task SerializeToStreamAsync(Stream target, TransportContext? context) =>
        SerializeToStreamAsync(target, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream target, TransportContext? context, CancellationToken ct)
    {
        stream.TrySetResult(target);
        await done.Task.WaitAsync(ct).ConfigureAwait(false);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
