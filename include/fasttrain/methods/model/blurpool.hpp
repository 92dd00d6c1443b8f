// fasttrain/methods/model/blurpool.hpp -- BlurPool (model / replace), a surgery method.
//
// Anti-aliased downsampling: Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"
// (arXiv:1904.11486); the rules and defaults are MosaicML Composer's BlurPool:
//   MaxPool2d<K, S>, S > 1          -> MaxPool2d<K, 1> then BlurPool2d<S>   (max, then blur and
//                                      subsample: Zhang's MaxBlurPool)
//   Conv2d<InC, OutC, K, S, P>, S > 1, InC >= MinChannels
//                                   -> BlurPool2d<1> then the same Conv2d   (blur first)
// nn::BlurPool2d is a fixed 3x3 binomial low-pass filter; it has no parameters. It adds work:
// the max-pool runs at stride 1 (S^2 more windows) and every blur reads and writes the image.
//
//   using Net2 = methods::model_for<Net, methods::BlurPool<>>;
//   Trainer t{net2, opt, loss, methods::BlurPool<>{}};
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/nn/blurpool.hpp"
#include "fasttrain/nn/conv.hpp"

namespace fasttrain::methods {

template <bool ReplaceConvs = true, bool ReplaceMaxPools = true, std::int64_t MinChannels = 16>
struct BlurPool {
  static constexpr taxonomy tag{component::model, action::replace};
  using events = fasttrain::events<>;
  static constexpr bool surgery = true;
  static std::string name() { return "BlurPool"; }

  template <class L>
  struct rule {
    using type = L;
  };
  template <std::int64_t K, std::int64_t S, class B>
  struct rule<nn::BasicPool2d<nn::PoolKind::max, K, S, B>> {
    using type = std::conditional_t<ReplaceMaxPools && (S > 1),
                                    nn::Sequential<nn::BasicPool2d<nn::PoolKind::max, K, 1, B>, nn::BasicBlurPool2d<S, B>>,
                                    nn::BasicPool2d<nn::PoolKind::max, K, S, B>>;
  };
  template <std::int64_t InC, std::int64_t OutC, std::int64_t K, std::int64_t S, std::int64_t P, class B>
  struct rule<nn::Conv2d<InC, OutC, K, S, P, B>> {
    using conv = nn::Conv2d<InC, OutC, K, S, P, B>;
    using type = std::conditional_t<ReplaceConvs && (S > 1) && InC >= MinChannels,
                                    nn::Sequential<nn::BasicBlurPool2d<1, B>, conv>, conv>;
  };
  template <class L>
  using apply = typename rule<L>::type;
};

}  // namespace fasttrain::methods
