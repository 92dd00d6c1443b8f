// fasttrain/train/phases.hpp -- the phases of a training run that the Trainer can time, and
// what a method must offer to receive those times (profile::Profiler does).
//
// The Trainer times phases only when its recipe holds a method with
// `static constexpr bool phase_timer = true`; otherwise no clock is read and no timing code
// is compiled. Such a method receives:
//   void begin_timing(std::vector<std::string> method_names);   // at the start of fit()
//   void add_phase(Phase p, double seconds);                     // each timed interval
//   void add_method(std::size_t method_index, double seconds);   // each hook call of a method
//   void add_step(std::int64_t samples, const Shape& sample_shape);   // each optimizer step
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/tensor/shape.hpp"

namespace fasttrain {

enum class Phase : int {
  data,      ///< waiting for the data source's next batch (the loader's prefetch did not keep up)
  forward,   ///< the network's training-mode forward pass
  loss,      ///< the loss and its gradient
  backward,  ///< the network's backward pass
  step,      ///< the optimizer's update
  checks,    ///< the Trainer's finiteness checks of the loss and gradients
  eval,      ///< evaluation on the test set (not part of the training seconds)
  count
};
inline constexpr int num_phases = static_cast<int>(Phase::count);

inline constexpr const char* phase_name(Phase p) {
  switch (p) {
    case Phase::data: return "data wait";
    case Phase::forward: return "forward";
    case Phase::loss: return "loss";
    case Phase::backward: return "backward";
    case Phase::step: return "optimizer step";
    case Phase::checks: return "finiteness checks";
    case Phase::eval: return "evaluation";
    case Phase::count: break;
  }
  return "?";
}

/// A method that receives the Trainer's phase times.
template <class M>
concept PhaseTimer = requires { requires M::phase_timer; };

}  // namespace fasttrain
