// Runs the fused annealing step's kernels (kernels/anneal_fused.cu) on the host, thread by
// thread over a launch grid smaller than the work (so every grid-stride loop is exercised),
// one C entry point per kernel taking the kernel's own parameters after (grid, block); the
// tests drive them through seedopt.kernels.anneal.FusedStep. The host __half holds a float:
// callers pass float16 columns already widened to float32.
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

#define ENTRY(name, params, args) \
    extern "C" void name##_host(unsigned grid, unsigned block, params) { \
        over_grid(grid, block, [&] { name args; }); \
    }
#define P(...) __VA_ARGS__

ENTRY(fused_move,
      P(long long chains, long long m, long long ids, const double* u, const bool* X,
        const long long* count, const long long* needle, const long long* prev,
        const long long* next, const long long* n_seeds, const long long* n_needles,
        double p_shift, double p_swap, long long* add, long long* rem, long long* new_seeds,
        long long* new_needles),
      (chains, m, ids, u, X, count, needle, prev, next, n_seeds, n_needles, p_shift, p_swap,
       add, rem, new_seeds, new_needles))

#define PROPOSE_PARAMS(T)                                                                     \
    P(double* D, const T* cols, const long long* add, const long long* rem,                  \
      const unsigned char* cur, long long chains, long long R, long long slots,               \
      const long long* seg_start, int n_seg, const int* t_seg, const int* t_gt,               \
      const double* thr, int n_tally, unsigned long long* counts)
#define PROPOSE_ARGS \
    (D, cols, add, rem, cur, chains, R, slots, seg_start, n_seg, t_seg, t_gt, thr, n_tally, counts)
extern "C" void fused_propose_float_host(unsigned grid, unsigned block, PROPOSE_PARAMS(float)) {
    over_grid(grid, block, [&] { fused_propose<float> PROPOSE_ARGS; });
}
extern "C" void fused_propose_half_host(unsigned grid, unsigned block, PROPOSE_PARAMS(float)) {
    const __half* h = reinterpret_cast<const __half*>(cols);
    over_grid(grid, block, [&] {
        fused_propose<__half>(D, h, add, rem, cur, chains, R, slots, seg_start, n_seg, t_seg,
                              t_gt, thr, n_tally, counts);
    });
}

ENTRY(fused_rows,
      P(int phase, const double* D, const unsigned char* cur, long long chains, long long R,
        long long slots, const long long* seg_start, int n_q, const int* q_seg,
        const int* q_tally, const int* q_above, const long long* q_k,
        const unsigned long long* counts, int n_tally, const double* thr, const long long* top,
        long long bins, unsigned int* hist, const long long* bin, long long cap,
        unsigned int* fill, double* buf),
      (phase, D, cur, chains, R, slots, seg_start, n_q, q_seg, q_tally, q_above, q_k, counts,
       n_tally, thr, top, bins, hist, bin, cap, fill, buf))

ENTRY(fused_pick,
      P(long long chains, int n_q, const int* q_tally, const int* q_above, const long long* q_k,
        const unsigned long long* counts, int n_tally, long long bins, unsigned int* hist,
        unsigned char* need, long long* bin, long long* rank),
      (chains, n_q, q_tally, q_above, q_k, counts, n_tally, bins, hist, need, bin, rank))

ENTRY(fused_rank,
      P(const double* D, const unsigned char* cur, long long chains, long long R,
        const long long* seg_start, int n_q, const int* q_seg, const int* q_tally,
        const int* q_above, int n_tally, const double* thr, const long long* top, long long bins,
        const unsigned char* need, const long long* bin, const long long* rank, long long cap,
        const unsigned int* fill, const double* buf, double* value),
      (D, cur, chains, R, seg_start, n_q, q_seg, q_tally, q_above, n_tally, thr, top, bins,
       need, bin, rank, cap, fill, buf, value))

ENTRY(fused_accept,
      P(long long chains, long long m, long long ids, bool* X, long long* count,
        const long long* needle, const long long* add, const long long* rem,
        const long long* new_seeds, const long long* new_needles, long long* n_seeds,
        long long* n_needles, unsigned long long* counts, int n_tally, const unsigned char* need,
        const double* value, int n_q, unsigned int* fill, const double* rx, long long n_target,
        int n_lim, const int* lim_q, const double* lim_max, const double* lim_floor,
        const double* w, double cap_seeds, double cap_needles, const double* u,
        const double* temp, double* f, double* best_f, bool* best_X, unsigned char* cur,
        unsigned long long* trace),
      (chains, m, ids, X, count, needle, add, rem, new_seeds, new_needles, n_seeds, n_needles,
       counts, n_tally, need, value, n_q, fill, rx, n_target, n_lim, lim_q, lim_max, lim_floor,
       w, cap_seeds, cap_needles, u, temp, f, best_f, best_X, cur, trace))
