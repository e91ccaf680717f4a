// Simulated-annealing step kernels: one thread per (chain, row) dose entry, grid-stride.
// Mirror seedopt.kernels.anneal.propose_reference / accept_reference: the same float64
// doses bit for bit (each column entry widened exactly). Doses are (chains, rows) row-major;
// the candidates' columns are (m, rows) row-major (one candidate per row), float or __half.
#include <cuda_fp16.h>

__device__ __forceinline__ double widen(float v) { return (double)v; }
__device__ __forceinline__ double widen(__half v) { return (double)__half2float(v); }

// out[c, r] = dose[c, r] + cols[add[c], r] - cols[rem[c], r]; add or rem < 0: no term.
template <typename T>
__global__ void anneal_propose(const double* __restrict__ dose, const T* __restrict__ cols,
                               const long long* __restrict__ add,
                               const long long* __restrict__ rem, long long chains,
                               long long rows, double* __restrict__ out) {
    const long long total = chains * rows;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        const long long c = k / rows;
        const long long r = k - c * rows;
        const long long a = add[c];
        const long long b = rem[c];
        double v = dose[k];
        v = v + (a >= 0 ? widen(cols[a * rows + r]) : 0.0);
        v = v - (b >= 0 ? widen(cols[b * rows + r]) : 0.0);
        out[k] = v;
    }
}

// dose[c, r] = proposed[c, r] where accepted[c]: the accepted chains take their proposal.
__global__ void anneal_accept(double* __restrict__ dose, const double* __restrict__ proposed,
                              const bool* __restrict__ accepted, long long chains,
                              long long rows) {
    const long long total = chains * rows;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        if (accepted[k / rows]) dose[k] = proposed[k];
    }
}
