// Runs seedopt's CUDA kernel source on the host, thread by thread over the same launch grid
// that kernels/tg43.py uses, so its indexing, layouts and parameter order can be checked
// against the NumPy reference on a machine without a GPU. Build with -ffp-contract=off
// (the kernel is compiled with --fmad=false). KERNEL_SOURCE is the .cu file's path.
#include <math.h>

#include "device_shim.h"
static inline float __ldg(const float* p) { return *p; }

#include KERNEL_SOURCE

extern "C" void launch(const float* points, const float* seeds, const float* axes,
                       const float* const* tables, const float* params,
                       int n_gL, int n_Fr, int n_Ftheta, int n_phi, int formalism_2d,
                       long long n_points, int n_seeds, unsigned grid_x, unsigned grid_y,
                       unsigned block, float* out) {
    blockDim = {block, 1, 1};
    gridDim = {grid_x, grid_y, 1};
    for (unsigned by = 0; by < grid_y; ++by)
        for (unsigned bx = 0; bx < grid_x; ++bx)
            for (unsigned tx = 0; tx < block; ++tx) {
                blockIdx = {bx, by, 0};
                threadIdx = {tx, 0, 0};
                tg43_influence<float>(points, seeds, axes, tables[0], tables[1], tables[2],
                                      tables[3], tables[4], tables[5], tables[6], tables[7],
                                      params, n_gL, n_Fr, n_Ftheta, n_phi, formalism_2d,
                                      n_points, n_seeds, out);
            }
}
