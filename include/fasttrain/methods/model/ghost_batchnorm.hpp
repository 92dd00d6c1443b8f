// fasttrain/methods/model/ghost_batchnorm.hpp -- GhostBatchNorm (model / replace), a surgery method.
//
// Hoffer, Hubara, Soudry 2017, "Train longer, generalize better: closing the generalization gap
// in large batch training of neural networks" (arXiv:1705.08741); default ghost size as MosaicML
// Composer's GhostBatchNorm:
//   BatchNorm2d<C>  ->  GhostBatchNorm2d<C, GhostSize>
// which normalises each run of GhostSize consecutive samples of a training batch by its own
// statistics (evaluation is unchanged: the running statistics). Same parameters and checkpoint
// records. Unlike Composer's, the chunks are GhostSize long (the last may be shorter, not
// ceil(n / G) equal ones) and the running statistics take the full momentum once per chunk
// (Composer divides it by the number of chunks), so they move faster per step.
//
//   using Net2 = methods::model_for<Net, methods::GhostBatchNorm<32>>;
//   Trainer t{net2, opt, loss, methods::GhostBatchNorm<32>{}};
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/nn/batchnorm.hpp"
#include "fasttrain/nn/ghost_batchnorm.hpp"

namespace fasttrain::methods {

template <std::int64_t GhostSize = 32>
struct GhostBatchNorm {
  static_assert(GhostSize >= 2, "fasttrain::methods::GhostBatchNorm: GhostSize must be >= 2");
  static constexpr taxonomy tag{component::model, action::replace};
  using events = fasttrain::events<>;
  static constexpr bool surgery = true;
  static std::string name() { return "GhostBatchNorm"; }

  template <class L>
  struct rule {
    using type = L;
  };
  template <std::int64_t C, class B>
  struct rule<nn::BatchNorm2d<C, B>> {
    using type = nn::GhostBatchNorm2d<C, GhostSize, B>;
  };
  template <class L>
  using apply = typename rule<L>::type;
};

}  // namespace fasttrain::methods
