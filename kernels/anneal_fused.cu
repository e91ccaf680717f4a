// The fused simulated-annealing step: one step of every chain in seven kernel launches and no
// library call, mirroring the pure-array step of seedopt.kernels.anneal (reference_step) bit for
// bit. Every kernel is a grid-stride loop of independent threads; threads meet only in integer
// atomics (whose order does not change the result) and in one atomicMin on an order-preserving
// key, so the kernels run unchanged on the host thread by thread (tests/cuda_host).
//
// Layouts (row-major): doses D (2, chains, R) float64, chain c's current doses in D[cur[c]], its
// proposal written to D[1 - cur[c]]; candidate columns (m, R); loadings X (chains, m) bool;
// needle counts (chains, needles) int64; the rows R are segments: segment 0 the target, then one
// per limited structure (seg_start, n_seg + 1 entries). Tallies t: rows of segment t_seg[t] at or
// above (t_gt 0) or above (t_gt 1) thr[c, t]; tallies 0, 1, 2 are the target at Rx, 1.5 Rx,
// 2 Rx. Quantities q (the k-th hottest dose of a segment: D90, D{v}cc, Dmax) are found exactly
// only where the objective needs them: q_above 0 (D90) when fewer than k rows reach the tally's
// threshold (the value is below it), q_above 1 (an organ metric) when at least k rows exceed it.
// Selection: a histogram over the top bits of an order-preserving key, the bin holding the k-th
// row, that bin's rows gathered and ranked; a bin too full for its buffer is resolved by an
// 8-bit radix select of its rows (exact, sequential, rare).
#include <cuda_fp16.h>

#define KEY_SHIFT 45
#define MAX_TALLY 16

__device__ __forceinline__ double widen_f(float v) { return (double)v; }
__device__ __forceinline__ double widen_f(__half v) { return (double)__half2float(v); }

// An unsigned key with the order of the doubles (negative doses from cancellation included).
__device__ __forceinline__ unsigned long long order_key(double v) {
    const unsigned long long b = (unsigned long long)__double_as_longlong(v);
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}

__device__ __forceinline__ double from_order_key(unsigned long long k) {
    const unsigned long long b = (k >> 63) ? (k & 0x7fffffffffffffffull) : ~k;
    return __longlong_as_double((long long)b);
}

// Histogram bin of v below a quantity's top key (already shifted): 0 the hottest bin; both
// ends open (clamped), so every row of the domain has a bin.
__device__ __forceinline__ long long bin_of(double v, long long top, long long bins) {
    long long b = top - (long long)(order_key(v) >> KEY_SHIFT);
    return b < 0 ? 0 : (b >= bins ? bins - 1 : b);
}

__device__ __forceinline__ bool in_domain(double v, double thr, int above) {
    return above ? v > thr : v < thr;
}

__device__ __forceinline__ bool needed(unsigned long long count, long long k, int above) {
    return above ? (long long)count >= k : (long long)count < k;
}

// Each chain's move from its six uniform draws: add and remove (-1: none), the seeds and
// needles after it. A flip of candidate floor(u0 m); with probability p_shift (u1) the r-th
// loaded seed (r = floor(u4 seeds)) moves to its needle's next (u2 < 0.5) or previous
// candidate; with probability p_swap it moves to the r'-th free candidate on a needle in use
// (r' = floor(u5 free)). A shift whose destination is missing or loaded becomes the flip.
__global__ void fused_move(long long chains, long long m, long long n_needle_ids,
                           const double* __restrict__ u, const bool* __restrict__ X,
                           const long long* __restrict__ count,
                           const long long* __restrict__ needle,
                           const long long* __restrict__ prev, const long long* __restrict__ next,
                           const long long* __restrict__ n_seeds,
                           const long long* __restrict__ n_needles, double p_shift,
                           double p_swap, long long* __restrict__ add,
                           long long* __restrict__ rem, long long* __restrict__ new_seeds,
                           long long* __restrict__ new_needles) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < chains;
         c += stride) {
        const double* uc = u + c * 6;
        const bool* x = X + c * m;
        const long long* cnt = count + c * n_needle_ids;
        long long flip = (long long)(uc[0] * (double)m);
        flip = flip < m - 1 ? flip : m - 1;
        const long long ns = n_seeds[c];
        long long pick = 0;
        if (ns > 0) {
            long long r = (long long)(uc[4] * (double)ns);
            r = r < ns - 1 ? r : ns - 1;
            for (long long j = 0; j < m; ++j) {
                if (x[j]) {
                    if (r == 0) { pick = j; break; }
                    --r;
                }
            }
        }
        long long n_free = 0;
        for (long long j = 0; j < m; ++j) n_free += (!x[j] && cnt[needle[j]] > 0) ? 1 : 0;
        long long gather = -1;
        if (n_free > 0) {
            long long r = (long long)(uc[5] * (double)n_free);
            r = r < n_free - 1 ? r : n_free - 1;
            for (long long j = 0; j < m; ++j) {
                if (!x[j] && cnt[needle[j]] > 0) {
                    if (r == 0) { gather = j; break; }
                    --r;
                }
            }
        }
        const double kind = uc[1];
        const bool swap = kind >= p_shift && kind < p_shift + p_swap;
        const long long dest = swap ? gather : (uc[2] < 0.5 ? next[pick] : prev[pick]);
        const bool free_dest = dest >= 0 && !x[dest];
        const bool shift = kind < p_shift + p_swap && ns > 0 && free_dest;
        const bool flipped_on = x[flip];
        const long long r_ = shift ? pick : (flipped_on ? flip : -1);
        const long long a_ = shift ? dest : (flipped_on ? -1 : flip);
        const long long nd_r = needle[r_ >= 0 ? r_ : 0];
        const long long nd_a = needle[a_ >= 0 ? a_ : 0];
        const bool frees = r_ >= 0 && cnt[nd_r] == 1 && !(a_ >= 0 && nd_a == nd_r);
        const bool opens = a_ >= 0 && cnt[nd_a] == 0;
        rem[c] = r_;
        add[c] = a_;
        new_seeds[c] = ns + (a_ >= 0 ? 1 : 0) - (r_ >= 0 ? 1 : 0);
        new_needles[c] = n_needles[c] + (opens ? 1 : 0) - (frees ? 1 : 0);
    }
}

// Proposal doses (current + column add - column rem, as propose_reference sums them) and the
// tallies. Thread (c, s) of slots threads per chain takes rows s, s + slots, ...
template <typename T>
__global__ void fused_propose(double* __restrict__ D, const T* __restrict__ cols,
                              const long long* __restrict__ add,
                              const long long* __restrict__ rem,
                              const unsigned char* __restrict__ cur, long long chains,
                              long long R, long long slots, const long long* __restrict__ seg_start,
                              int n_seg, const int* __restrict__ t_seg,
                              const int* __restrict__ t_gt, const double* __restrict__ thr,
                              int n_tally, unsigned long long* __restrict__ counts) {
    const long long total = chains * slots;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        const long long c = k / slots;
        const long long s = k - c * slots;
        const double* base = D + ((long long)cur[c] * chains + c) * R;
        double* out = D + ((long long)(1 - cur[c]) * chains + c) * R;
        const long long a = add[c];
        const long long b = rem[c];
        unsigned long long hits[MAX_TALLY];
        for (int t = 0; t < n_tally; ++t) hits[t] = 0;
        for (int g = 0; g < n_seg; ++g) {
            for (long long r = seg_start[g] + s; r < seg_start[g + 1]; r += slots) {
                double v = base[r];
                v = v + (a >= 0 ? widen_f(cols[a * R + r]) : 0.0);
                v = v - (b >= 0 ? widen_f(cols[b * R + r]) : 0.0);
                out[r] = v;
                for (int t = 0; t < n_tally; ++t) {
                    if (t_seg[t] != g) continue;
                    const double h = thr[c * n_tally + t];
                    hits[t] += (t_gt[t] ? v > h : v >= h) ? 1 : 0;
                }
            }
        }
        for (int t = 0; t < n_tally; ++t)
            if (hits[t]) atomicAdd(&counts[c * n_tally + t], hits[t]);
    }
}

// The domain rows of each needed quantity in the proposal: phase 0 counts them into the
// quantity's histogram; phase 1 gathers those in the bin fused_pick chose into its buffer (at
// most cap of them; fill counts them all).
__global__ void fused_rows(int phase, const double* __restrict__ D,
                           const unsigned char* __restrict__ cur, long long chains, long long R,
                           long long slots, const long long* __restrict__ seg_start, int n_q,
                           const int* __restrict__ q_seg, const int* __restrict__ q_tally,
                           const int* __restrict__ q_above, const long long* __restrict__ q_k,
                           const unsigned long long* __restrict__ counts, int n_tally,
                           const double* __restrict__ thr, const long long* __restrict__ top,
                           long long bins, unsigned int* __restrict__ hist,
                           const long long* __restrict__ bin, long long cap,
                           unsigned int* __restrict__ fill, double* __restrict__ buf) {
    const long long total = chains * slots;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        const long long c = k / slots;
        const long long s = k - c * slots;
        const double* prop = D + ((long long)(1 - cur[c]) * chains + c) * R;
        for (int q = 0; q < n_q; ++q) {
            const long long cq = c * n_q + q;
            const int t = q_tally[q];
            if (!needed(counts[c * n_tally + t], q_k[q], q_above[q])) continue;
            const double h = thr[c * n_tally + t];
            for (long long r = seg_start[q_seg[q]] + s; r < seg_start[q_seg[q] + 1]; r += slots) {
                const double v = prop[r];
                if (!in_domain(v, h, q_above[q])) continue;
                const long long b = bin_of(v, top[cq], bins);
                if (phase == 0) {
                    atomicAdd(&hist[cq * bins + b], 1u);
                } else if (b == bin[cq]) {
                    const unsigned int slot = atomicAdd(&fill[cq], 1u);
                    if (slot < cap) buf[cq * cap + slot] = v;
                }
            }
        }
    }
}

// Thread per (chain, quantity): whether it is needed, the bin holding its k-th row and the
// rank k' within that bin; the histogram is cleared for the next step.
__global__ void fused_pick(long long chains, int n_q, const int* __restrict__ q_tally,
                           const int* __restrict__ q_above, const long long* __restrict__ q_k,
                           const unsigned long long* __restrict__ counts, int n_tally,
                           long long bins, unsigned int* __restrict__ hist,
                           unsigned char* __restrict__ need, long long* __restrict__ bin,
                           long long* __restrict__ rank) {
    const long long total = chains * n_q;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        const long long c = k / n_q;
        const int q = (int)(k - c * n_q);
        const unsigned long long n = counts[c * n_tally + q_tally[q]];
        const bool is = needed(n, q_k[q], q_above[q]);
        need[k] = is ? 1 : 0;
        bin[k] = -1;
        if (!is) continue;
        unsigned long long cum = q_above[q] ? 0ull : n;
        unsigned int* hq = hist + k * bins;
        for (long long b = 0; b < bins; ++b) {
            const unsigned long long h = hq[b];
            if (bin[k] < 0 && (long long)(cum + h) >= q_k[q]) {
                bin[k] = b;
                rank[k] = q_k[q] - (long long)cum;
            }
            cum += h;
            hq[b] = 0;
        }
    }
}

// The k'-th hottest row of a bin too full for its buffer: an exact 8-bit radix select over the
// order keys of the bin's rows, one thread.
__device__ double radix_select(const double* prop, long long lo, long long hi, double h,
                               int above, long long tp, long long bins, long long b,
                               long long kk) {
    unsigned long long prefix = 0, mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        unsigned int digits[256];
        for (int d = 0; d < 256; ++d) digits[d] = 0;
        for (long long r = lo; r < hi; ++r) {
            const double v = prop[r];
            if (!in_domain(v, h, above) || bin_of(v, tp, bins) != b) continue;
            const unsigned long long key = order_key(v);
            if ((key & mask) == prefix) digits[(key >> shift) & 255ull] += 1;
        }
        unsigned long long cum = 0;
        for (int d = 255; d >= 0; --d) {
            if ((long long)(cum + digits[d]) >= kk) {
                prefix |= (unsigned long long)d << shift;
                kk -= (long long)cum;
                break;
            }
            cum += digits[d];
        }
        mask |= 255ull << shift;
    }
    return from_order_key(prefix);
}

// Thread per (chain, quantity, buffer slot): the slot whose value has rank k' in its buffer
// (greater values first, ties by slot) writes it; slot 0 resolves an overfull bin.
__global__ void fused_rank(const double* __restrict__ D, const unsigned char* __restrict__ cur,
                           long long chains, long long R, const long long* __restrict__ seg_start,
                           int n_q, const int* __restrict__ q_seg, const int* __restrict__ q_tally,
                           const int* __restrict__ q_above, int n_tally,
                           const double* __restrict__ thr, const long long* __restrict__ top,
                           long long bins, const unsigned char* __restrict__ need,
                           const long long* __restrict__ bin, const long long* __restrict__ rank,
                           long long cap, const unsigned int* __restrict__ fill,
                           const double* __restrict__ buf, double* __restrict__ value) {
    const long long total = chains * n_q * cap;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += stride) {
        const long long cq = k / cap;
        const long long slot = k - cq * cap;
        if (!need[cq]) continue;
        const long long n = fill[cq];
        if (n > cap) {
            if (slot != 0) continue;
            const long long c = cq / n_q;
            const int q = (int)(cq - c * n_q);
            const double* prop = D + ((long long)(1 - cur[c]) * chains + c) * R;
            value[cq] = radix_select(prop, seg_start[q_seg[q]], seg_start[q_seg[q] + 1],
                                     thr[c * n_tally + q_tally[q]], q_above[q], top[cq], bins,
                                     bin[cq], rank[cq]);
            continue;
        }
        if (slot >= n) continue;
        const double* bq = buf + cq * cap;
        const double v = bq[slot];
        long long before = 0;
        for (long long j = 0; j < n; ++j) before += (bq[j] > v || (j < slot && bq[j] == v)) ? 1 : 0;
        if (before == rank[cq] - 1) value[cq] = v;
    }
}

// Thread per chain: the proposal's objective (the formula of objective.terms_from_doses, term
// by term in its order), Metropolis acceptance at the chain's temperature temp[c], the chain's state, its best
// loading, the step's trace entry (min over chains, as an order key) and the cleared tallies.
__global__ void fused_accept(long long chains, long long m, long long n_needle_ids,
                             bool* __restrict__ X, long long* __restrict__ count,
                             const long long* __restrict__ needle,
                             const long long* __restrict__ add, const long long* __restrict__ rem,
                             const long long* __restrict__ new_seeds,
                             const long long* __restrict__ new_needles,
                             long long* __restrict__ n_seeds, long long* __restrict__ n_needles,
                             unsigned long long* __restrict__ counts, int n_tally,
                             const unsigned char* __restrict__ need,
                             const double* __restrict__ value, int n_q,
                             unsigned int* __restrict__ fill, const double* __restrict__ rx,
                             long long n_target, int n_lim, const int* __restrict__ lim_q,
                             const double* __restrict__ lim_max,
                             const double* __restrict__ lim_floor,
                             const double* __restrict__ w, double cap_seeds, double cap_needles,
                             const double* __restrict__ u, const double* __restrict__ temp,
                             double* __restrict__ f,
                             double* __restrict__ best_f, bool* __restrict__ best_X,
                             unsigned char* __restrict__ cur,
                             unsigned long long* __restrict__ trace) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < chains;
         c += stride) {
        const unsigned long long* tc = counts + c * n_tally;
        const long long q0 = c * n_q;
        const double r = rx[c];
        const double shortfall = need[q0] ? 100.0 * fmax(0.0, r - value[q0]) / r : 0.0;
        const double v150 = 100.0 * ((double)tc[1] / (double)n_target);
        const double v200 = 100.0 * ((double)tc[2] / (double)n_target);
        double excess = 0.0, organ = 0.0;
        for (int l = 0; l < n_lim; ++l) {
            const long long cq = q0 + lim_q[l];
            const double v = need[cq] ? value[cq] : 0.0;
            excess = excess + 100.0 * fmax(0.0, v - lim_max[l]) / lim_max[l];
            organ = organ + 100.0 * fmax(0.0, v - lim_floor[l]) / lim_max[l];
        }
        const long long s1 = new_seeds[c], n1 = new_needles[c];
        const double total = w[0] * shortfall + w[1] * excess + w[2] * v150 + w[3] * v200 +
                             w[4] * (double)s1 + w[5] * (double)n1 + w[6] * organ;
        const bool within = ((double)s1 <= cap_seeds || s1 <= n_seeds[c]) &&
                            ((double)n1 <= cap_needles || n1 <= n_needles[c]);
        const double delta = total - f[c];
        const double boltzmann = exp(fmin(0.0, -delta / temp[c]));
        const bool acc = within && (delta <= 0 || u[c * 6 + 3] < boltzmann);
        if (acc) {
            const long long a = add[c], b = rem[c];
            if (b >= 0) {
                X[c * m + b] = false;
                count[c * n_needle_ids + needle[b]] -= 1;
            }
            if (a >= 0) {
                X[c * m + a] = true;
                count[c * n_needle_ids + needle[a]] += 1;
            }
            n_seeds[c] = s1;
            n_needles[c] = n1;
            f[c] = total;
            cur[c] = (unsigned char)(1 - cur[c]);
        }
        if (f[c] < best_f[c]) {
            best_f[c] = f[c];
            for (long long j = 0; j < m; ++j) best_X[c * m + j] = X[c * m + j];
        }
        atomicMin(trace, order_key(best_f[c]));
        for (int t = 0; t < n_tally; ++t) counts[c * n_tally + t] = 0;
        for (int q = 0; q < n_q; ++q) fill[q0 + q] = 0;
    }
}
