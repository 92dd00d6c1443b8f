// Compile-fail: the Trainer reports its phase times to one phase timer; a recipe with two
// (profile::Profiler and another) is refused.
#include "common.hpp"

struct OtherTimer {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::none, fasttrain::action::retrofit};
  static constexpr bool phase_timer = true;
  using events = fasttrain::events<>;
  void begin_timing(std::vector<std::string>) {}
  void add_phase(fasttrain::Phase, double) {}
  void add_method(std::size_t, double) {}
  void add_step(std::int64_t, const fasttrain::Shape&) {}
};

int main() {
#ifdef FASTTRAIN_CF_FAIL
  return cf::run(fasttrain::profile::Profiler{}, OtherTimer{});
#else
  return cf::run(fasttrain::profile::Profiler{});
#endif
}
