// Host stand-ins for CUDA's kernel qualifiers and launch indices, so a .cu kernel source
// compiles as C++ and runs thread by thread on the host (tests only).
#pragma once
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, blockDim, threadIdx, gridDim;
// Atomics and bit casts: threads run one after another on the host, so each is a plain
// read-modify-write.
#include <string.h>
static inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { unsigned int o = *a; *a = o + v; return o; }
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { unsigned long long o = *a; *a = o + v; return o; }
static inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) { unsigned long long o = *a; if (v < o) *a = v; return o; }
static inline long long __double_as_longlong(double v) { long long b; memcpy(&b, &v, sizeof b); return b; }
static inline double __longlong_as_double(long long b) { double v; memcpy(&v, &b, sizeof v); return v; }
