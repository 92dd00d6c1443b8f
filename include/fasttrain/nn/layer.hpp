// fasttrain/nn/layer.hpp -- the contract every layer satisfies, and shared helpers.
//
// A layer L over backend B (see tensor/eigen.hpp for what a backend provides):
//
//   using backend = B;
//   static constexpr std::int64_t in_features;    // per-sample input size, or nn::any
//   static constexpr std::int64_t out_features;   // per-sample output size, or nn::any (= same as input)
//   static std::string name();                    // "Linear<784,256>"
//   Shape output_shape(const Shape& in) const;    // throws shape_error for an input it cannot take
//   void forward(const tensor& x, tensor& y, Mode mode);
//   void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx);
//       // writes (not accumulates) its parameter gradients; dx == nullptr: input gradient not needed
//   template <class F> void for_each_parameter(F&& f);   // f(value, grad) for each parameter matrix
//   void parameter_names(std::vector<std::string>& out, const std::string& prefix) const;
//   void reset_parameters(Rng& rng);              // initialise parameters / reseed layer RNGs
//   template <class B2> using rebind = ...;       // the same layer on another backend
//   static constexpr bool has_parameters;         // false lets Sequential skip its backward
//
// `nn::Sequential` checks at compile time that static feature sizes of consecutive
// layers fit, and owns the activation buffers so a training step allocates nothing
// after the first batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/tensor/eigen.hpp"

namespace fasttrain::nn {

/// A feature count not fixed at compile time (shape-preserving layers use it).
inline constexpr std::int64_t any = -1;

enum class Mode { train, eval };

/// Layers without parameters inherit these no-ops.
struct parameterless {
  static constexpr bool has_parameters = false;
  template <class F>
  void for_each_parameter(F&&) {}
  void parameter_names(std::vector<std::string>&, const std::string&) const {}
  void reset_parameters(Rng&) {}
};

}  // namespace fasttrain::nn
