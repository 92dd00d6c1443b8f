// fasttrain/nn/init.hpp -- seeded weight initialisation (He / Xavier).
//
// He (Kaiming) keeps activation variance through ReLU layers: Var(w) = 2 / fan_in.
// Xavier (Glorot) balances forward and backward variance: Var(w) = 2 / (fan_in + fan_out).
// Uniform variants draw from U(-a, a) with a = sqrt(3 Var).
#pragma once

#include <cmath>

#include "fasttrain/core/rng.hpp"

namespace fasttrain::nn {

enum class Init { he_uniform, he_normal, xavier_uniform, xavier_normal, zeros };

inline const char* init_name(Init i) {
  switch (i) {
    case Init::he_uniform: return "he_uniform";
    case Init::he_normal: return "he_normal";
    case Init::xavier_uniform: return "xavier_uniform";
    case Init::xavier_normal: return "xavier_normal";
    case Init::zeros: return "zeros";
  }
  return "?";
}

/// Fills `w` for a layer with the given fan-in and fan-out.
template <class B, class M>
void initialize(M& w, std::int64_t fan_in, std::int64_t fan_out, Init scheme, Rng& rng) {
  const double var = (scheme == Init::he_uniform || scheme == Init::he_normal)
                         ? 2.0 / static_cast<double>(fan_in)
                         : 2.0 / static_cast<double>(fan_in + fan_out);
  switch (scheme) {
    case Init::he_uniform:
    case Init::xavier_uniform: {
      const auto a = static_cast<float>(std::sqrt(3.0 * var));
      B::fill_uniform(w, -a, a, rng);
      break;
    }
    case Init::he_normal:
    case Init::xavier_normal: B::fill_normal(w, 0.f, static_cast<float>(std::sqrt(var)), rng); break;
    case Init::zeros: w.setZero(); break;
  }
}

}  // namespace fasttrain::nn
