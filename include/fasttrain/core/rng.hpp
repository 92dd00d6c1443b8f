// fasttrain/core/rng.hpp -- a small, fully specified random number generator.
//
// std::mt19937 is portable but std::uniform_*_distribution and std::shuffle are not:
// their algorithms differ between standard libraries. fasttrain promises bitwise
// reproducibility from a seed, so it uses its own generator (xoshiro256**, seeded by
// splitmix64) and its own distributions, whose every step is written here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>

namespace fasttrain {

class Rng {
 public:
  using result_type = std::uint64_t;

  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& s : s_) s = splitmix64(x);
    has_spare_ = false;
  }

  /// An independent stream derived from this seed and `stream` (used for per-epoch
  /// shuffles and per-layer initialisation so that each is reproducible on its own).
  static Rng derive(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * (stream + 1));
    return Rng(splitmix64(x));
  }

  /// The generator's whole state (for checkpoints): the xoshiro256** words, then the
  /// cached second normal deviate as its float bits and a flag (1 when cached).
  struct state_type {
    std::uint64_t words[6];
  };
  state_type state() const {
    state_type st{{s_[0], s_[1], s_[2], s_[3], 0, has_spare_ ? 1u : 0u}};
    std::memcpy(&st.words[4], &spare_, sizeof(float));
    return st;
  }
  void set_state(const state_type& st) {
    for (int i = 0; i < 4; ++i) s_[i] = st.words[i];
    float f;
    std::memcpy(&f, &st.words[4], sizeof(float));
    spare_ = f;
    has_spare_ = st.words[5] != 0;
  }

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }

  result_type operator()() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1), 24 random bits (exactly representable as float).
  float uniform() { return static_cast<float>((*this)() >> 40) * 0x1.0p-24f; }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }

  /// Uniform integer in [0, n) without modulo bias (Lemire's method); 0 when n == 0.
  std::uint64_t below(std::uint64_t n) {
    if (n == 0) return 0;
    std::uint64_t x = (*this)();
    __uint128_t m = static_cast<__uint128_t>(x) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        x = (*this)();
        m = static_cast<__uint128_t>(x) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  /// Standard normal (Box-Muller, caching the second value).
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    do u1 = static_cast<double>((*this)() >> 11) * 0x1.0p-53; while (u1 <= 0.0);
    const double u2 = static_cast<double>((*this)() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2.0 * std::numbers::pi * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2.0 * std::numbers::pi * u2));
  }
  float normal(float mean, float stddev) { return mean + stddev * normal(); }

  /// Gamma(shape, 1) for shape > 0 (Marsaglia and Tsang 2000; shape < 1 by the boost
  /// Gamma(shape + 1) * U^(1/shape)).
  double gamma(double shape) {
    if (shape < 1.0) {
      double u = 0.0;
      do u = static_cast<double>((*this)() >> 11) * 0x1.0p-53; while (u <= 0.0);
      return gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      const double x = normal();
      double v = 1.0 + c * x;
      if (v <= 0.0) continue;
      v = v * v * v;
      double u = 0.0;
      do u = static_cast<double>((*this)() >> 11) * 0x1.0p-53; while (u <= 0.0);
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }
  /// Beta(a, b) for a, b > 0, as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x + y > 0.0 ? x / (x + y) : 0.5;
  }

  /// Fisher-Yates shuffle of a random-access range.
  template <class It>
  void shuffle(It first, It last) {
    const auto n = static_cast<std::uint64_t>(last - first);
    for (std::uint64_t i = n; i > 1; --i) {
      const auto j = below(i);
      using std::swap;
      swap(first[i - 1], first[j]);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  std::uint64_t s_[4]{};
  float spare_ = 0.f;
  bool has_spare_ = false;
};

}  // namespace fasttrain
