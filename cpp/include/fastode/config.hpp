// Portability layer shared by the host compiler and NVRTC.
//
// NVRTC ships no C++ standard library, so under __CUDACC_RTC__ this header
// uses only CUDA's built-in math and defines nothing that needs <cmath>.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FASTODE_HD __host__ __device__
#define FASTODE_INLINE __forceinline__
// Coefficient tables live in device memory on the GPU and are constexpr data
// on the host, so both read the same literals.
#define FASTODE_TABLE __device__ constexpr
#define FASTODE_SIMD
#define FASTODE_UNROLL _Pragma("unroll")
#define FASTODE_SIMD_SUM(x)
#else
#define FASTODE_HD
#define FASTODE_INLINE inline __attribute__((always_inline))
#define FASTODE_TABLE inline constexpr
#define FASTODE_SIMD _Pragma("omp simd")
// Loops over stages and state components have small constant trip counts.
// Unrolling them before vectorization turns each trajectory's state into
// scalars, so a plain loop over lanes vectorizes with the state in registers.
#define FASTODE_UNROLL _Pragma("GCC unroll 16")
#define FASTODE_PRAGMA(x) _Pragma(#x)
// A sum whose order does not matter, such as a NaN probe, may be vectorized.
#define FASTODE_SIMD_SUM(x) FASTODE_PRAGMA(omp simd reduction(+ : x))
#endif

#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstdint>
#include <limits>
#endif

namespace fastode {

#if defined(__CUDACC_RTC__)
using index_t = long long;
#else
using index_t = std::int64_t;
#endif

/// Per-trajectory outcome, stored as int8 in `Solution.status`.
enum Status : int {
    SUCCESS = 0,
    MAX_STEPS = 1,
    STEP_TOO_SMALL = 2,
    NON_FINITE = 3,
};

namespace math {

#if defined(__CUDACC_RTC__)
FASTODE_HD FASTODE_INLINE double sqrt(double x) { return ::sqrt(x); }
FASTODE_HD FASTODE_INLINE float sqrt(float x) { return ::sqrtf(x); }
FASTODE_HD FASTODE_INLINE double cos(double x) { return ::cos(x); }
FASTODE_HD FASTODE_INLINE float cos(float x) { return ::cosf(x); }
FASTODE_HD FASTODE_INLINE double sin(double x) { return ::sin(x); }
FASTODE_HD FASTODE_INLINE float sin(float x) { return ::sinf(x); }
FASTODE_HD FASTODE_INLINE double pow(double x, double y) { return ::pow(x, y); }
FASTODE_HD FASTODE_INLINE float pow(float x, float y) { return ::powf(x, y); }
FASTODE_HD FASTODE_INLINE double fabs(double x) { return ::fabs(x); }
FASTODE_HD FASTODE_INLINE float fabs(float x) { return ::fabsf(x); }
FASTODE_HD FASTODE_INLINE double nextafter(double x, double y) { return ::nextafter(x, y); }
FASTODE_HD FASTODE_INLINE float nextafter(float x, float y) { return ::nextafterf(x, y); }
FASTODE_HD FASTODE_INLINE bool isfinite(double x) { return ::isfinite(x); }
FASTODE_HD FASTODE_INLINE bool isfinite(float x) { return ::isfinite(x); }
#else
using std::cos;
using std::fabs;
using std::isfinite;
using std::nextafter;
using std::pow;
using std::sin;
using std::sqrt;
#endif

template <class T>
FASTODE_HD FASTODE_INLINE T max(T a, T b) {
    return a > b ? a : b;
}

template <class T>
FASTODE_HD FASTODE_INLINE T min(T a, T b) {
    return a < b ? a : b;
}

template <class T>
FASTODE_HD FASTODE_INLINE T quiet_nan() {
#if defined(__CUDACC_RTC__)
    return T(__int_as_float(0x7fffffff));
#else
    return std::numeric_limits<T>::quiet_NaN();
#endif
}

/// 2^n for an integer-valued n inside the normal exponent range of T, built
/// from its exponent bits.
template <class T>
FASTODE_HD FASTODE_INLINE T pow2(T n);

template <>
FASTODE_HD FASTODE_INLINE double pow2<double>(double n) {
    const long long bits = (static_cast<long long>(n) + 1023LL) << 52;
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __longlong_as_double(bits);
#else
    return __builtin_bit_cast(double, bits);
#endif
}

template <>
FASTODE_HD FASTODE_INLINE float pow2<float>(float n) {
    const int bits = (static_cast<int>(n) + 127) << 23;
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __int_as_float(bits);
#else
    return __builtin_bit_cast(float, bits);
#endif
}

}  // namespace math
}  // namespace fastode
