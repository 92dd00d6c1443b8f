// A tiny outside program: includes fasttrain as an installed/added library would be,
// does a small computation and checks it. Exit 0 on success, 1 on a wrong result.
#include <fasttrain/fasttrain.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace fasttrain::literals;
  using B = fasttrain::cpu::eigen;
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "fasttrain_consumer: FAILED: %s\n", what);
      ++failures;
    }
  };

  // C = A X through the backend's GEMM.
  B::matrix A(2, 3), X(3, 2), C;
  A << 1, 2, 3,
       4, 5, 6;
  X << 1, 0,
       0, 1,
       1, 1;
  B::gemm(false, false, 1.f, A, X, 0.f, C);
  check(C.rows() == 2 && C.cols() == 2, "gemm result shape");
  check(C(0, 0) == 4.f && C(0, 1) == 5.f && C(1, 0) == 10.f && C(1, 1) == 11.f, "gemm values");
  check(B::sum(C) == 30.f, "sum");

  // Halfway through the second of four epochs.
  fasttrain::Time t;
  t.batches_per_epoch = 10;
  t.epoch = 1;
  t.batch_in_epoch = 5;
  t.max_duration = 4_ep;
  check(std::abs(t.in(fasttrain::Unit::epoch) - 1.5) < 1e-12, "Time::in(epoch)");
  check(std::abs(t.fraction() - 0.375) < 1e-12, "Time::fraction");
  check(t.total_batches() == 40, "Time::total_batches");
  check((2_ep).str() == "2ep", "Duration::str");

  if (failures) return 1;
  std::printf("fasttrain_consumer: OK (%s)\n", B::name);
  return 0;
}
