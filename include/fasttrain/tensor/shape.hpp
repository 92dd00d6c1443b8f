// fasttrain/tensor/shape.hpp -- the shape of one sample.
//
// Every backend stores a batch as a matrix with one column per sample; `Shape` says
// how that column is laid out: {features}, {channels, height, width} or {sequence,
// features}. An image sample is stored channels-fastest (HWC, i.e. NHWC for the batch):
// element (c, y, x) is at c + C * (x + W * y). With that layout a convolution computed as
// im2col + GEMM writes its output directly in the layout the next layer reads, and
// per-channel operations (bias, BatchNorm) are row operations on a C x (H W N) view. Spatial and sequence sizes may change during
// training (progressive resizing, sequence-length warmup); feature and channel counts
// are checked at compile time by the layers that own them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace fasttrain {

struct Shape {
  std::array<std::int64_t, 3> dims{1, 1, 1};
  int rank = 1;

  constexpr Shape() = default;
  constexpr explicit Shape(std::int64_t features) : dims{features, 1, 1}, rank(1) {}
  constexpr Shape(std::int64_t a, std::int64_t b) : dims{a, b, 1}, rank(2) {}
  constexpr Shape(std::int64_t c, std::int64_t h, std::int64_t w) : dims{c, h, w}, rank(3) {}

  constexpr std::int64_t size() const { return dims[0] * dims[1] * dims[2]; }
  constexpr std::int64_t operator[](int i) const { return dims[static_cast<std::size_t>(i)]; }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank; ++i) s += (i ? "x" : "") + std::to_string(dims[static_cast<std::size_t>(i)]);
    return s + ")";
  }
  friend constexpr bool operator==(const Shape& a, const Shape& b) {
    return a.rank == b.rank && a.dims == b.dims;
  }
};

}  // namespace fasttrain
