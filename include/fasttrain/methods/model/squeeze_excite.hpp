// fasttrain/methods/model/squeeze_excite.hpp -- SqueezeExcite (model / retrofit), a surgery method.
//
// Channel attention after convolutions: Hu, Shen, Sun 2018, "Squeeze-and-Excitation Networks"
// (arXiv:1709.01507); the rule and defaults are MosaicML Composer's SqueezeExcite:
//   Conv2d<InC, OutC, ...>, OutC >= MinChannels  ->  the Conv2d then SqueezeExcite2d<OutC, R>,
//   R = min(LatentChannels, OutC).
// Each block adds 2 OutC R + OutC + R parameters and a per-sample gate; it costs little compute
// but adds a pass over the conv's output.
//
//   using Net2 = methods::model_for<Net, methods::SqueezeExcite<32, 16>>;
//   Trainer t{net2, opt, loss, methods::SqueezeExcite<32, 16>{}};
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/nn/conv.hpp"
#include "fasttrain/nn/squeeze_excite.hpp"

namespace fasttrain::methods {

template <std::int64_t MinChannels = 128, std::int64_t LatentChannels = 64>
struct SqueezeExcite {
  static_assert(MinChannels >= 1 && LatentChannels >= 1,
                "fasttrain::methods::SqueezeExcite: MinChannels and LatentChannels must be >= 1");
  static constexpr taxonomy tag{component::model, action::retrofit};
  using events = fasttrain::events<>;
  static constexpr bool surgery = true;
  static std::string name() { return "SqueezeExcite"; }

  template <class L>
  struct rule {
    using type = L;
  };
  template <std::int64_t InC, std::int64_t OutC, std::int64_t K, std::int64_t S, std::int64_t P, class B>
  struct rule<nn::Conv2d<InC, OutC, K, S, P, B>> {
    using conv = nn::Conv2d<InC, OutC, K, S, P, B>;
    static constexpr std::int64_t R = LatentChannels < OutC ? LatentChannels : OutC;
    using type = std::conditional_t<(OutC >= MinChannels), nn::Sequential<conv, nn::SqueezeExcite2d<OutC, R, B>>, conv>;
  };
  template <class L>
  using apply = typename rule<L>::type;
};

}  // namespace fasttrain::methods
