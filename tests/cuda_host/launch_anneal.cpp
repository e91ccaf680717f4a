// Runs seedopt's annealing-step kernels (kernels/anneal_step.cu) on the host, thread by
// thread over a launch grid smaller than the data (so the grid-stride loops are exercised),
// to check them against their pure-array references without a GPU. The host __half holds a
// float: callers pass float16 values already widened to float32.
#include <math.h>

#include "device_shim.h"

#include KERNEL_SOURCE

template <typename F>
static void over_grid(unsigned grid, unsigned block, F body) {
    blockDim = {block, 1, 1};
    gridDim = {grid, 1, 1};
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            body();
        }
}

extern "C" void propose_float(const double* dose, const float* cols, const long long* add,
                              const long long* rem, long long chains, long long rows,
                              unsigned grid, unsigned block, double* out) {
    over_grid(grid, block, [&] { anneal_propose<float>(dose, cols, add, rem, chains, rows, out); });
}

extern "C" void propose_half(const double* dose, const float* cols, const long long* add,
                             const long long* rem, long long chains, long long rows,
                             unsigned grid, unsigned block, double* out) {
    const __half* h = reinterpret_cast<const __half*>(cols);
    over_grid(grid, block, [&] { anneal_propose<__half>(dose, h, add, rem, chains, rows, out); });
}

extern "C" void accept(double* dose, const double* proposed, const bool* accepted,
                       long long chains, long long rows, unsigned grid, unsigned block) {
    over_grid(grid, block, [&] { anneal_accept(dose, proposed, accepted, chains, rows); });
}
