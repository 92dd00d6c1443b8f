// fasttrain/optim/buffers.hpp -- what every optimizer checks while it walks the parameters:
// each gradient has its parameter's shape, and its per-parameter state buffers (momentum,
// moments) were made for this model. SGD, AdamW, LARS and LAMB share these.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"

namespace fasttrain::optim::detail {

/// `who` ("fasttrain::optim::SGD") steps a model whose parameters are not those its state was
/// made for.
inline config_error state_mismatch(const char* who, std::size_t i) {
  return config_error(fasttrain::detail::cat(
      who, ": the model's parameters do not match the optimizer's state (at parameter ", i,
      "); an optimizer steps one model; call reset() before using it with another"));
}

/// Throws shape_error when gradient `i` does not have the shape of its parameter.
template <class M>
void check_gradient(const char* who, std::size_t i, const M& p, const M& g) {
  if (g.rows() != p.rows() || g.cols() != p.cols())
    throw shape_error(fasttrain::detail::cat(who, ": gradient ", i, " is ", g.rows(), "x", g.cols(),
                                             " but its parameter is ", p.rows(), "x", p.cols(),
                                             " (no backward pass before the step?)"));
}

/// The state buffer of parameter `i` (shape of `p`): appended as zeros on the optimizer's first
/// step (`first`), afterwards checked to exist with that shape.
template <class M>
M& state_buffer(const char* who, std::vector<M>& buffers, bool first, std::size_t i, const M& p) {
  if (first) buffers.push_back(M::Zero(p.rows(), p.cols()));
  if (i >= buffers.size() || buffers[i].rows() != p.rows() || buffers[i].cols() != p.cols())
    throw state_mismatch(who, i);
  return buffers[i];
}

}  // namespace fasttrain::optim::detail
