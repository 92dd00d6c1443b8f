# benchmarks/gpu/nvcc-flags.sh -- sourced by scripts/nvcc-check.sh and benchmarks/gpu/run.sh:
# finds nvcc and sets the flags both use to build gpu::thrust for CUDA.
#   NVCC        the compiler, or empty when there is none
#   NVCC_FLAGS  an array: C++20, extended (__host__ __device__) lambdas, the include paths,
#               g++ as the host compiler with OpenMP (cpu::eigen's threads), -O3 for both the
#               device and the host code, and the host code vectorised for FASTTRAIN_HOST_ARCH
# CUDA_ARCH (default: native when a GPU is visible, else sm_90, the H100) picks the target.
# FASTTRAIN_HOST_ARCH (default native; benchmarks/gpu/build.sh sets x86-64-v3 for binaries that
# run on another machine) is g++'s -march: without it nvcc's host code has no AVX, and Eigen
# ran the MLP 30x slower than under g++ -march=native.
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
            -Xcompiler -fopenmp,-O3,-march="${FASTTRAIN_HOST_ARCH:-native}" -Iinclude -I/usr/include/eigen3 -DFASTTRAIN_NO_XTENSOR
            -Werror cross-execution-space-call -diag-suppress 20012,177)
