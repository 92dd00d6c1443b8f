# benchmarks/gpu/nvcc-flags.sh -- sourced by scripts/nvcc-check.sh and benchmarks/gpu/run.sh:
# finds nvcc and sets the flags both use to build gpu::thrust for CUDA.
#   NVCC        the compiler, or empty when there is none
#   NVCC_FLAGS  an array: C++20, extended (__host__ __device__) lambdas, the include paths,
#               g++ as the host compiler with OpenMP (cpu::eigen's threads), -O3
# CUDA_ARCH (default: native when a GPU is visible, else sm_90, the H100) picks the target.
NVCC=$(command -v nvcc || true)
[[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
if [[ -z "${CUDA_ARCH:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then CUDA_ARCH=native; else CUDA_ARCH=sm_90; fi
fi
# A host function called from a kernel is an error (-Werror cross-execution-space-call), not a
# warning: on the GPU it would be wrong code. Silenced: 20012 (Eigen's defaulted functions carry
# __host__ __device__, which nvcc ignores) and 177 (the OpenMP `if` variable of cpu::eigen's
# loops, which nvcc's front end does not see used).
NVCC_FLAGS=(-std=c++20 -O3 --extended-lambda --expt-relaxed-constexpr -arch="$CUDA_ARCH"
            -Xcompiler -fopenmp -Iinclude -I/usr/include/eigen3 -DFASTTRAIN_NO_XTENSOR
            -Werror cross-execution-space-call -diag-suppress 20012,177)
