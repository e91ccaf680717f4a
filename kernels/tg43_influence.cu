// TG-43U1 dose-influence matrix: one thread per (point, seed) entry.
// Mirrors seedopt.dose.tg43.dose_rate_per_u / seedopt.dose.influence.reference_block
// operation by operation in float32; compiled without FMA contraction (--fmad=false) and
// with IEEE division and square root, so the two round alike. Units: cm, rad, cGy/h/U;
// the output is scaled by params[SCALE] (to Gy per seed).
#include <cuda_fp16.h>

#define SEED_HALF_LENGTH_CM 0.225f
#define SEED_RADIUS2_CM2 0.0016f
#define RHO_FLOOR2_CM2 1e-14f
#define HALF_PI 1.5707963267948966f
#define PI 3.141592653589793f

// atan(a)/a ~ P(a^2) on [0, 1]: seedopt.dose.tg43.ATAN_COEFFS, highest degree first here.
__device__ __forceinline__ float atan2_nonneg(float y, float x) {
    const float ax = fabsf(x);
    const float a = fminf(y, ax) / fmaxf(y, ax);
    const float s = a * a;
    float p = 0.0028500084299594164f;
    p = p * s + -0.01606907695531845f;
    p = p * s + 0.04269220307469368f;
    p = p * s + -0.07504348456859589f;
    p = p * s + 0.10640957206487656f;
    p = p * s + -0.14203649759292603f;
    p = p * s + 0.1999261975288391f;
    p = p * s + -0.3333307206630707f;
    p = p * s + 1.0f;
    p = p * a;
    p = p + (y > ax ? 1.0f : 0.0f) * (HALF_PI - 2.0f * p);
    p = p + (x < 0.0f ? 1.0f : 0.0f) * (PI - 2.0f * p);
    return p;
}

struct Grid { float x0, inv_dx; int n; };

// Cell index and fraction on a uniform grid, clamped to the nodes (tg43._cell).
__device__ __forceinline__ int cell(float x, Grid g, float* frac) {
    const float u = fminf(fmaxf((x - g.x0) * g.inv_dx, 0.0f), (float)(g.n - 1));
    const float lo = floorf(u);
    *frac = u - lo;
    return (int)lo;
}

__device__ __forceinline__ float interp1(const float* __restrict__ value,
                                         const float* __restrict__ slope, Grid g, float x) {
    float f;
    const int i = cell(x, g, &f);
    return __ldg(value + i) + f * __ldg(slope + i);
}

__device__ __forceinline__ void store(float* out, long long k, float v) { out[k] = v; }
__device__ __forceinline__ void store(__half* out, long long k, float v) { out[k] = __float2half_rn(v); }

enum Param { K_RATE, LENGTH, QUARTER_L2, GL_X0, GL_INV_DX, GL_R_MAX, GL_LOG_SLOPE, F_R0, F_INV_DR,
             F_INV_DTHETA, PHI_X0, PHI_INV_DX, SCALE, CUTOFF2, N_PARAMS };

// points: (n_points, 3); seeds, axes: (3, n_seeds); tables: see tg43.DeviceTables.
template <typename T>
__global__ void tg43_influence(
    const float* __restrict__ points, const float* __restrict__ seeds,
    const float* __restrict__ axes,
    const float* __restrict__ gL_value, const float* __restrict__ gL_slope,
    const float* __restrict__ F_c00, const float* __restrict__ F_c01,
    const float* __restrict__ F_c10, const float* __restrict__ F_c11,
    const float* __restrict__ phi_value, const float* __restrict__ phi_slope,
    const float* __restrict__ params,
    int n_gL, int n_Fr, int n_Ftheta, int n_phi, int formalism_2d,
    long long n_points, int n_seeds, T* __restrict__ out)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_seeds) return;
    const float k_rate = params[K_RATE], L = params[LENGTH], quarter_l2 = params[QUARTER_L2];
    const Grid g_gL = {params[GL_X0], params[GL_INV_DX], n_gL};
    const float g_rmax = params[GL_R_MAX], g_slope = params[GL_LOG_SLOPE];
    const Grid g_Fr = {params[F_R0], params[F_INV_DR], n_Fr};
    const Grid g_Ft = {0.0f, params[F_INV_DTHETA], n_Ftheta};
    const Grid g_phi = {params[PHI_X0], params[PHI_INV_DX], n_phi};
    const float scale = params[SCALE], cutoff2 = params[CUTOFF2];
    const float sx = seeds[j], sy = seeds[n_seeds + j], sz = seeds[2 * n_seeds + j];
    const float ux = axes[j], uy = axes[n_seeds + j], uz = axes[2 * n_seeds + j];

    for (long long i = blockIdx.y; i < n_points; i += gridDim.y) {
        const float dx = points[3 * i] - sx;
        const float dy = points[3 * i + 1] - sy;
        const float dz = points[3 * i + 2] - sz;
        const float z = dx * ux + dy * uy + dz * uz;
        const float ex = dx - z * ux;
        const float ey = dy - z * uy;
        const float ez = dz - z * uz;
        const float rho2_raw = ex * ex + ey * ey + ez * ez;
        float rho2, r2;
        if (formalism_2d) {
            const float in_capsule = fabsf(z) < SEED_HALF_LENGTH_CM ? 1.0f : 0.0f;
            rho2 = fmaxf(rho2_raw, fmaxf(in_capsule * SEED_RADIUS2_CM2, RHO_FLOOR2_CM2));
            r2 = rho2 + z * z;
        } else {
            rho2 = r2 = fmaxf(rho2_raw + z * z, SEED_RADIUS2_CM2);
        }
        const float r = sqrtf(r2);
        const float rho = formalism_2d ? sqrtf(rho2) : r;
        const float l_rho = L * rho;
        const float geometry = atan2_nonneg(l_rho, r2 - quarter_l2) / l_rho;
        const float g = interp1(gL_value, gL_slope, g_gL, r)
                        * expf(fmaxf(r - g_rmax, 0.0f) * g_slope);
        float rate = k_rate * geometry * g;
        if (formalism_2d) {
            float fr, ft;
            const int ir = cell(r, g_Fr, &fr);
            const int it = cell(atan2_nonneg(rho, fabsf(z)), g_Ft, &ft);  // F(180-t) = F(t)
            const int k = it * n_Fr + ir;
            const float low = __ldg(F_c00 + k) + fr * __ldg(F_c01 + k);
            const float high = __ldg(F_c10 + k) + fr * __ldg(F_c11 + k);
            rate = rate * (low + ft * high);
        } else {
            rate = rate * interp1(phi_value, phi_slope, g_phi, r);
        }
        float v = rate * scale;
        if (cutoff2 > 0.0f && rho2_raw + z * z > cutoff2) v = 0.0f;
        store(out, i * (long long)n_seeds + j, v);
    }
}
