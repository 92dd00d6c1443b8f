// Built by the package.* tests when fasttrain::xtensor exists: the cpu::xtensor backend
// (xtensor storage, GEMM through xtensor-blas and a CBLAS) compiles, links and trains.
#include <fasttrain/tensor/xtensor.hpp>

#include "mlp_step.hpp"

int main() { return mlp_steps<fasttrain::cpu::xtensor>("fasttrain_consumer_xtensor"); }
