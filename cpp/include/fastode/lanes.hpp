// Structure-of-arrays storage for a block of W trajectories advanced together.
//
// Component i of lane l sits at v[i * W + l], so a loop over lanes touches
// contiguous memory and the compiler turns it into SIMD instructions. On the
// GPU W is 1 and the same code advances one trajectory per thread.
#pragma once

#include "config.hpp"

namespace fastode {

template <class T, int D, int W>
struct LaneVec {
    static constexpr int dim = D;
    static constexpr int lanes = W;
    T v[D * W];

    FASTODE_HD FASTODE_INLINE T& operator()(int i, int l) { return v[i * W + l]; }
    FASTODE_HD FASTODE_INLINE const T& operator()(int i, int l) const {
        return v[i * W + l];
    }
};

/// A per-trajectory parameter: `data[n * stride]` for trajectory n, with
/// stride 0 when every trajectory shares one value.
template <class T>
struct Param {
    const T* data = nullptr;
    index_t stride = 0;

    FASTODE_HD FASTODE_INLINE T at(index_t n, index_t offset = 0) const {
        return data[n * stride + offset];
    }
};

/// Lane l of a block that starts at trajectory `first` and holds `count` real
/// trajectories. Padding lanes repeat the last real one, so they cost no extra
/// steps and never change a real lane's result.
FASTODE_HD FASTODE_INLINE index_t lane_source(index_t first, int count, int l) {
    return first + (l < count ? l : count - 1);
}

}  // namespace fastode
