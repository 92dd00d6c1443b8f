// fasttrain/tensor/thrust.hpp -- the gpu::thrust backend: Thrust kernels over device memory.
//
//   using Net = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>>::rebind<gpu::thrust>;
//
// Not included by fasttrain.hpp: include this header (CMake target fasttrain::thrust in
// fasttrain's own build and in the installed package: find_package(fasttrain COMPONENTS thrust)).
//
// Where the code runs is Thrust's device system, fixed when the translation unit is compiled:
//   nvcc (THRUST_DEVICE_SYSTEM_CUDA, the default there): device memory on the GPU, kernels
//       as CUDA kernels (compile with --extended-lambda), GEMM through cuBLAS (link cublas).
//   g++ -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP (or _CPP): "device" memory is host
//       memory, kernels are OpenMP (or serial) loops, GEMM is Eigen's on that memory.
// The CI has no GPU: it runs this backend with the OMP system, and compiles it with nvcc.
//
// Everything a layer touches stays on the device: weights, activations, gradients,
// optimizer state. The host sees it only through to_host / from_host (batches coming in
// from the loader, checkpoints, argmax labels, the per-sample losses summed in double).
// `data()` is a raw device pointer: dereference it only inside for_index kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <vector>

// Without nvcc, Thrust cannot target CUDA: unless the includer chose a device system, use
// OpenMP's when compiling with -fopenmp and the serial one otherwise.
#if !defined(__CUDACC__) && !defined(THRUST_DEVICE_SYSTEM)
#ifdef _OPENMP
#define THRUST_DEVICE_SYSTEM THRUST_DEVICE_SYSTEM_OMP
#else
#define THRUST_DEVICE_SYSTEM THRUST_DEVICE_SYSTEM_CPP
#endif
#endif

#include <thrust/copy.h>
#include <thrust/device_free.h>
#include <thrust/device_malloc.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#include <cublas_v2.h>
#define FASTTRAIN_THRUST_CUDA 1
#else
#include <Eigen/Core>
#define FASTTRAIN_THRUST_CUDA 0
#endif

#include "fasttrain/tensor/kernels.hpp"

namespace fasttrain::gpu {

namespace detail {
/// Device blocks kept after they are freed, by byte size, and handed out again: a training
/// step allocates the same temporaries every time, so from the second step on it allocates
/// nothing from the device (cudaMalloc and cudaFree cost tens of microseconds and
/// synchronise the device). Kernels run in order on one stream, so a block freed by one
/// step is reused by a later kernel only after the earlier ones. When the device runs out,
/// the cached blocks are released and the allocation is tried once more.
class block_pool {
 public:
  static block_pool& instance() {
    static block_pool* pool = new block_pool;  // never destroyed: the CUDA context may go first
    return *pool;
  }
  void* take(std::size_t bytes) {
    bytes = round(bytes);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= bytes;
        return p;
      }
    }
    try {
      return ::thrust::raw_pointer_cast(::thrust::device_malloc<char>(bytes));
    } catch (const std::bad_alloc&) {
      release();
      return ::thrust::raw_pointer_cast(::thrust::device_malloc<char>(bytes));
    }
  }
  void give(void* p, std::size_t bytes) {
    if (!p) return;
    std::lock_guard<std::mutex> lk(mu_);
    free_.emplace(round(bytes), p);
    cached_ += round(bytes);
  }
  /// Frees every cached block (blocks in use stay).
  void release() {
    std::multimap<std::size_t, void*> blocks;
    {
      std::lock_guard<std::mutex> lk(mu_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [bytes, p] : blocks) ::thrust::device_free(::thrust::device_pointer_cast(static_cast<char*>(p)));
  }
  /// Bytes held in the cache (not in use).
  std::size_t cached_bytes() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  static std::size_t round(std::size_t b) { return (std::max<std::size_t>(b, 1) + 255) / 256 * 256; }
  mutable std::mutex mu_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_ = 0;
};

/// The execution policy of the backend's kernels. On CUDA, par_nosync: Thrust's default
/// policy waits for every kernel to finish before it returns, which costs a device round
/// trip per kernel; kernels queue on the stream instead, and the host waits only where it
/// reads a result (to_host, reductions).
inline auto policy() {
#if FASTTRAIN_THRUST_CUDA
  return ::thrust::cuda::par_nosync;
#else
  return ::thrust::device;
#endif
}

/// n elements of T in device memory from block_pool, uninitialised after a change of size
/// (as Eigen's resize), so that a temporary costs neither an allocation nor a fill kernel.
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n) { resize(n); }
  device_buffer(const device_buffer& o) { *this = o; }
  device_buffer(device_buffer&& o) noexcept { swap(o); }
  device_buffer& operator=(const device_buffer& o) {
    if (this != &o) {
      resize(o.n_);
      if (n_) ::thrust::copy(policy(), o.begin(), o.end(), begin());
    }
    return *this;
  }
  device_buffer& operator=(device_buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  ~device_buffer() { block_pool::instance().give(p_, n_ * sizeof(T)); }

  void resize(std::size_t n) {
    if (n == n_) return;
    T* fresh = n ? static_cast<T*>(block_pool::instance().take(n * sizeof(T))) : nullptr;
    block_pool::instance().give(p_, n_ * sizeof(T));
    p_ = fresh;
    n_ = n;
  }
  std::size_t size() const { return n_; }
  T* data() { return p_; }
  const T* data() const { return p_; }
  ::thrust::device_ptr<T> begin() { return ::thrust::device_pointer_cast(p_); }
  ::thrust::device_ptr<T> end() { return begin() + static_cast<std::ptrdiff_t>(n_); }
  ::thrust::device_ptr<const T> begin() const { return ::thrust::device_pointer_cast(static_cast<const T*>(p_)); }
  ::thrust::device_ptr<const T> end() const { return begin() + static_cast<std::ptrdiff_t>(n_); }
  void fill(T v) {
    if (n_) ::thrust::fill(policy(), begin(), end(), v);
  }
  void swap(device_buffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }
  /// From and to host memory (these wait for the device).
  void assign(const T* host, std::size_t n) {
    resize(n);
    if (n) ::thrust::copy(host, host + n, begin());
  }
  void copy_to(T* host) const {
    if (n_) ::thrust::copy(begin(), end(), host);
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};
}  // namespace detail

struct thrust : fasttrain::detail::kernels<thrust> {
#if FASTTRAIN_THRUST_CUDA
  static constexpr const char* name = "gpu::thrust(cuda)";
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
  static constexpr const char* name = "gpu::thrust(omp)";
#else
  static constexpr const char* name = "gpu::thrust(cpp)";
#endif
  using scalar = float;
  using index = std::int64_t;
  using labels = std::vector<std::int32_t>;

  /// A rows x cols column-major float matrix in device memory.
  class matrix {
   public:
    using Scalar = float;
    /// The storage is device memory: host code must copy through to_host / from_host.
    static constexpr bool device_memory = true;
    matrix() = default;
    matrix(index r, index c) { resize(r, c); }
    static matrix Zero(index r, index c) {
      matrix m(r, c);
      m.setZero();
      return m;
    }
    index rows() const { return r_; }
    index cols() const { return c_; }
    index size() const { return r_ * c_; }
    float* data() { return v_.data(); }
    const float* data() const { return v_.data(); }
    /// New size; the contents are unspecified after a change of size (as Eigen's resize).
    void resize(index r, index c) {
      v_.resize(static_cast<std::size_t>(r * c));
      r_ = r;
      c_ = c;
    }
    void setZero() { v_.fill(0.f); }
    void setZero(index r, index c) { resize(r, c), setZero(); }
    void setOnes() { v_.fill(1.f); }
    void setOnes(index r, index c) { resize(r, c), setOnes(); }
    void swap(matrix& o) noexcept {
      v_.swap(o.v_);
      std::swap(r_, o.r_);
      std::swap(c_, o.c_);
    }
    /// Host copies, for checkpoints (io/archive.hpp).
    void copy_to_host(float* p) const { v_.copy_to(p); }
    void assign_from_host(const float* p, index r, index c) {
      v_.assign(p, static_cast<std::size_t>(r * c));
      r_ = r;
      c_ = c;
    }

   private:
    detail::device_buffer<float> v_;
    index r_ = 0, c_ = 0;
  };

  /// Device int32 storage (max-pool winners, labels) with a raw data() pointer.
  using int_buffer = detail::device_buffer<std::int32_t>;

  using tensor = fasttrain::detail::batch_tensor<matrix>;

  /// Conv2d's patch matrix per chunk: on a GPU 256 MiB, a whole batch of 128 (or a large
  /// part of 1024) so that each GEMM and im2col fills the device; on the CPU systems a
  /// cache-sized chunk. (1 GiB would cover the CNN's second convolution at batch 1024, 642 MB,
  /// and let its backward pass reuse the forward's patches: not measured yet.)
#if FASTTRAIN_THRUST_CUDA
  static constexpr std::int64_t conv_chunk_bytes = std::int64_t{256} << 20;
#else
  static constexpr std::int64_t conv_chunk_bytes = std::int64_t{4} << 20;
#endif
  /// The device's free memory in bytes (cudaMemGetInfo); 0 (not known) on the CPU systems.
  static std::int64_t free_memory_bytes() {
#if FASTTRAIN_THRUST_CUDA
    std::size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return static_cast<std::int64_t>(free + detail::block_pool::instance().cached_bytes());
#else
    return 0;
#endif
  }
  /// Frees the device blocks the backend keeps for reuse (see detail::block_pool); blocks in
  /// use stay. Returns the bytes freed.
  static std::size_t release_cached_memory() {
    const std::size_t bytes = detail::block_pool::instance().cached_bytes();
    detail::block_pool::instance().release();
    return bytes;
  }

  // ---- execution (threads() and parallel_parts: one part, from detail::kernels) -------------
  template <class F>
  static void for_index(index n, F f) {
    if (n > 0) ::thrust::for_each_n(detail::policy(), ::thrust::counting_iterator<index>(0), n, f);
  }
  template <class F>
  static void for_index2(index r, index c, F f) {
    if (r > 0 && c > 0)
      for_index(r * c, [=] FASTTRAIN_HD(index k) { f(k % r, k / r); });
  }
  static void from_host(const float* p, index r, index c, matrix& m) { m.assign_from_host(p, r, c); }
  template <class M>
  static void to_host(const M& m, float* p) {
    ::thrust::copy(::thrust::device_pointer_cast(m.data()), ::thrust::device_pointer_cast(m.data()) + m.size(), p);
  }
  static const std::int32_t* upload_labels(const labels& lab, int_buffer& buf) {
    buf.assign(lab.data(), lab.size());
    return buf.data();
  }
  static void download_ints(const int_buffer& b, std::int32_t* out) {
    b.copy_to(out);
  }

  // ---- linear algebra -------------------------------------------------------------------------
  /// C = alpha op(A) op(B) + beta C: cuBLAS on the GPU, Eigen on host-memory device systems.
  template <class MA, class MB, class MC>
  static void gemm(bool ta, bool tb, float alpha, const MA& A, const MB& B, float beta, MC&& C) {
    const index m = ta ? A.cols() : A.rows();
    const index n = tb ? B.rows() : B.cols();
    const index k = ta ? A.rows() : A.cols();
    if constexpr (std::is_same_v<std::decay_t<MC>, matrix>) {
      if (beta == 0.f) C.resize(m, n);
    }
    if (C.rows() != m || C.cols() != n || (tb ? B.cols() : B.rows()) != k)
      throw shape_error(fasttrain::detail::cat(name, "::gemm: ", m, "x", k, " times ", (tb ? B.cols() : B.rows()), "x", n, " into ",
                            C.rows(), "x", C.cols()));
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty product (cuBLAS refuses leading dimensions of 0): C = beta C
      apply([=] FASTTRAIN_HD(float& c) { c *= beta; }, C);
      return;
    }
#if FASTTRAIN_THRUST_CUDA
    const auto opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
    const int lda = static_cast<int>(A.rows()), ldb = static_cast<int>(B.rows()), ldc = static_cast<int>(C.rows());
    const precision p = gemm_precision();
    const cublasStatus_t st =
        p == precision::fp32
            ? cublasSgemm(cublas(), opa, opb, im, in, ik, &alpha, A.data(), lda, B.data(), ldb, &beta, C.data(), ldc)
            : cublasGemmEx(cublas(), opa, opb, im, in, ik, &alpha, A.data(), CUDA_R_32F, lda, B.data(), CUDA_R_32F, ldb,
                           &beta, C.data(), CUDA_R_32F, ldc,
                           p == precision::bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F_FAST_16F,
                           CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(fasttrain::detail::cat(name, "::gemm: cuBLAS failed with status ", int(st)));
#else
    using map = Eigen::Map<Eigen::MatrixXf>;
    using cmap = Eigen::Map<const Eigen::MatrixXf>;
    const cmap a0(A.data(), A.rows(), A.cols()), b0(B.data(), B.rows(), B.cols());
    map c(C.data(), C.rows(), C.cols());
    auto run = [&](const auto& a, const auto& b) {
      auto product = [&](const auto& x, const auto& y) {
        if (beta == 0.f) c.noalias() = alpha * (x * y);
        else {
          c *= beta;
          c.noalias() += alpha * (x * y);
        }
      };
      if (!ta && !tb) product(a, b);
      else if (ta && !tb) product(a.transpose(), b);
      else if (!ta && tb) product(a, b.transpose());
      else product(a.transpose(), b.transpose());
    };
    const precision p = gemm_precision();
    if (p == precision::fp32) {
      run(a0, b0);
    } else {  // the inputs rounded as the GPU's 16-bit products round them, the sums in fp32
      auto r = [p](float v) { return p == precision::bf16 ? round_to_bf16(v) : round_to_fp16(v); };
      const Eigen::MatrixXf a = a0.unaryExpr(r), b = b0.unaryExpr(r);
      run(a, b);
    }
#endif
  }

  /// The precision of gemm's products; the storage stays fp32 (methods::MixedPrecision
  /// sets it for a run). fp32; or the inputs rounded to bf16 or fp16 and the sums kept in
  /// fp32: on a GPU, cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF / _16F on the tensor cores.
  enum class precision { fp32, bf16, fp16 };
  static void set_gemm_precision(precision p) { gemm_precision_setting() = p; }
  static precision gemm_precision() { return gemm_precision_setting(); }

  /// v rounded to the nearest bf16 (ties to even), as a float. NaN stays NaN.
  static float round_to_bf16(float v) {
    if (v != v) return v;
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    std::memcpy(&v, &u, 4);
    return v;
  }
  /// v rounded to the nearest fp16 (ties to even; beyond 65504 infinity), as a float.
  static float round_to_fp16(float v) {
    if (v != v) return v;
    const float a = std::fabs(v);
    if (a >= 65520.f) return std::copysign(std::numeric_limits<float>::infinity(), v);
    if (a < 6.103515625e-05f) {  // subnormal fp16: a multiple of 2^-24
      const float q = std::nearbyint(a * 16777216.f) / 16777216.f;
      return std::copysign(q, v);
    }
    int e;
    std::frexp(a, &e);                          // a = f 2^e, f in [0.5, 1)
    const float ulp = std::ldexp(1.f, e - 11);  // 10 bits after the leading one
    return std::copysign(std::nearbyint(a / ulp) * ulp, v);
  }

  // ---- reductions: thrust::transform_reduce on the device --------------------------------------
  struct identity_op { FASTTRAIN_HD float operator()(float x) const { return x; } };
  struct square_op { FASTTRAIN_HD float operator()(float x) const { return x * x; } };
  struct abs_op { FASTTRAIN_HD float operator()(float x) const { return x < 0.f ? -x : x; } };
  struct self_difference_op { FASTTRAIN_HD float operator()(float x) const { return x - x; } };
  struct max_op { FASTTRAIN_HD float operator()(float a, float b) const { return a < b ? b : a; } };
  template <class M, class Op, class Red>
  static float reduce(const M& m, Op op, float init, Red red) {
    const auto p = ::thrust::device_pointer_cast(m.data());
    return ::thrust::transform_reduce(::thrust::device, p, p + m.size(), op, init, red);
  }
  template <class M>
  static float sum(const M& m) { return reduce(m, identity_op{}, 0.f, ::thrust::plus<float>()); }
  template <class M>
  static float squared_norm(const M& m) { return reduce(m, square_op{}, 0.f, ::thrust::plus<float>()); }
  template <class M>
  static float max_abs(const M& m) { return reduce(m, abs_op{}, 0.f, max_op{}); }
  template <class M>
  static bool all_finite(const M& m) { return reduce(m, self_difference_op{}, 0.f, ::thrust::plus<float>()) == 0.f; }

  static precision& gemm_precision_setting() {
    static precision p = precision::fp32;
    return p;
  }

#if FASTTRAIN_THRUST_CUDA
  /// The process's cuBLAS handle, created on first use.
  static cublasHandle_t cublas() {
    static const cublasHandle_t handle = [] {
      cublasHandle_t h = nullptr;
      if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("gpu::thrust: cublasCreate failed (no usable GPU?)");
      return h;
    }();
    return handle;
  }
#endif
};

}  // namespace fasttrain::gpu
