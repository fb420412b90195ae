namespace K2RL.Kernels;

/// <summary>
/// Which operands are transposed. Letters: C[M, N], reduction length K; all matrices row-major.
/// NN: C (+)= A[M,K] · B[K,N]          (backward dX = dY · W)
/// NT: C (+)= A[M,K] · B[N,K]ᵀ         (forward y = x · Wᵀ with W[out, in])
/// TN: C (+)= A[K,M]ᵀ · B[K,N]         (backward dW += dYᵀ · X)
/// Persisted nowhere, but keep the values stable.
/// </summary>
public enum GemmOp
{
    NN = 0,
    NT = 1,
    TN = 2,
}
