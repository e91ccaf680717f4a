// Host stand-ins for CUDA's kernel qualifiers and launch indices, so a .cu kernel source
// compiles as C++ and runs thread by thread on the host (tests only).
#pragma once
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, blockDim, threadIdx, gridDim;
