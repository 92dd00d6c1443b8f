// Built by the package.* tests when fasttrain::thrust exists: the gpu::thrust backend
// compiles, links and trains. Under g++ Thrust's device system is the host (OMP with
// -fopenmp, CPP without); under nvcc the same source runs on the GPU (link cublas).
#include <fasttrain/tensor/thrust.hpp>

#include "mlp_step.hpp"

int main() { return mlp_steps<fasttrain::gpu::thrust>("fasttrain_consumer_thrust"); }
