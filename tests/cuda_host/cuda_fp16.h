// Host stand-in for CUDA's half type, so the kernel source compiles as C++ (tests only).
#pragma once
struct __half { float value; };
static inline __half __float2half_rn(float f) { return __half{f}; }
static inline float __half2float(__half h) { return h.value; }
