// fasttrain/methods/model/factorize.hpp -- Factorize (model / restrict), a surgery method.
//
// Replaces large layers by low-rank pairs, after MosaicML Composer's Factorize (defaults
// theirs); the low-rank idea as in Jaderberg, Vedaldi, Zisserman 2014, "Speeding up
// Convolutional Neural Networks with Low Rank Expansions" (arXiv:1405.3866):
//   Linear<In, Out>              -> Linear<In, R> then Linear<R, Out>,   R = LatentFeatures
//       when min(In, Out) >= MinFeatures and R (In + Out) < In Out (fewer multiply-adds);
//   Conv2d<InC, OutC, K, S, P>   -> Conv2d<InC, R, K, S, P> then Conv2d<R, OutC, 1, 1, 0>,
//       R = min(InC, OutC) / LatentChannelsDivisor, when min(InC, OutC) >= MinChannels and
//       R (InC K K + OutC) < InC OutC K K.
// The new layers are initialised afresh (surgery happens before training, on the type).
//
//   using Net2 = methods::model_for<Net, methods::Factorize<256, 128>>;
//   Trainer t{net2, opt, loss, methods::Factorize<256, 128>{}};
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/nn/conv.hpp"
#include "fasttrain/nn/linear.hpp"

namespace fasttrain::methods {

template <std::int64_t MinFeatures = 256, std::int64_t LatentFeatures = 128, std::int64_t MinChannels = 256,
          std::int64_t LatentChannelsDivisor = 4>
struct Factorize {
  static_assert(MinFeatures >= 1 && LatentFeatures >= 1 && MinChannels >= 1 && LatentChannelsDivisor >= 1,
                "fasttrain::methods::Factorize: MinFeatures, LatentFeatures, MinChannels and "
                "LatentChannelsDivisor must be >= 1");
  static constexpr taxonomy tag{component::model, action::restrict};
  using events = fasttrain::events<>;
  static constexpr bool surgery = true;
  static std::string name() { return "Factorize"; }

  template <class L>
  struct rule {
    using type = L;
  };
  template <std::int64_t In, std::int64_t Out, class B>
  struct rule<nn::Linear<In, Out, B>> {
    static constexpr std::int64_t R = LatentFeatures;
    static constexpr bool factor = (In < Out ? In : Out) >= MinFeatures && R * (In + Out) < In * Out;
    using type = std::conditional_t<factor, nn::Sequential<nn::Linear<In, R, B>, nn::Linear<R, Out, B>>,
                                    nn::Linear<In, Out, B>>;
  };
  template <std::int64_t InC, std::int64_t OutC, std::int64_t K, std::int64_t S, std::int64_t P, class B>
  struct rule<nn::Conv2d<InC, OutC, K, S, P, B>> {
    static constexpr std::int64_t small = InC < OutC ? InC : OutC;
    static constexpr std::int64_t R = small / LatentChannelsDivisor > 0 ? small / LatentChannelsDivisor : 1;
    static constexpr bool factor = small >= MinChannels && R * (InC * K * K + OutC) < InC * OutC * K * K;
    using type = std::conditional_t<factor,
                                    nn::Sequential<nn::Conv2d<InC, R, K, S, P, B>, nn::Conv2d<R, OutC, 1, 1, 0, B>>,
                                    nn::Conv2d<InC, OutC, K, S, P, B>>;
  };
  template <class L>
  using apply = typename rule<L>::type;
};

}  // namespace fasttrain::methods
