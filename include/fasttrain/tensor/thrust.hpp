// fasttrain/tensor/thrust.hpp -- the gpu::thrust backend: thrust::device_vector storage.
//
//   using Net = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>>::rebind<gpu::thrust>;
//
// Not included by fasttrain.hpp: include this header (CMake target fasttrain::thrust in
// fasttrain's own build; the installed package does not export it yet).
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

#include <cstdint>
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
#include <thrust/device_vector.h>
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

struct thrust : detail::kernels<thrust> {
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

  /// A rows x cols column-major float matrix in a thrust::device_vector.
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
    float* data() { return ::thrust::raw_pointer_cast(v_.data()); }
    const float* data() const { return ::thrust::raw_pointer_cast(v_.data()); }
    /// New size; the contents are unspecified after a change of size (as Eigen's resize).
    void resize(index r, index c) {
      // A fresh vector, not device_vector::resize: the old contents need not be copied (and
      // Thrust 1.17's CPP system copies an empty vector from a null pointer, which UBSan flags).
      if (static_cast<std::size_t>(r * c) != v_.size()) ::thrust::device_vector<float>(static_cast<std::size_t>(r * c)).swap(v_);
      r_ = r;
      c_ = c;
    }
    void setZero() { ::thrust::fill(v_.begin(), v_.end(), 0.f); }
    void setZero(index r, index c) { resize(r, c), setZero(); }
    void setOnes() { ::thrust::fill(v_.begin(), v_.end(), 1.f); }
    void setOnes(index r, index c) { resize(r, c), setOnes(); }
    void swap(matrix& o) noexcept {
      v_.swap(o.v_);
      std::swap(r_, o.r_);
      std::swap(c_, o.c_);
    }
    ::thrust::device_vector<float>& vector() { return v_; }
    const ::thrust::device_vector<float>& vector() const { return v_; }
    /// Host copies, for checkpoints (io/archive.hpp).
    void copy_to_host(float* p) const { ::thrust::copy(v_.begin(), v_.end(), p); }
    void assign_from_host(const float* p, index r, index c) {
      resize(r, c);
      if (r * c != 0) ::thrust::copy(p, p + r * c, v_.begin());
    }

   private:
    ::thrust::device_vector<float> v_;
    index r_ = 0, c_ = 0;
  };
  using view_type = detail::raw_view<float>;
  using const_view_type = detail::raw_view<const float>;

  /// Device int32 storage (max-pool winners, labels) with a raw data() pointer.
  class int_buffer {
   public:
    void resize(std::size_t n) {
      if (n != v_.size()) ::thrust::device_vector<std::int32_t>(n).swap(v_);
    }
    std::size_t size() const { return v_.size(); }
    std::int32_t* data() { return ::thrust::raw_pointer_cast(v_.data()); }
    const std::int32_t* data() const { return ::thrust::raw_pointer_cast(v_.data()); }
    ::thrust::device_vector<std::int32_t>& vector() { return v_; }
    const ::thrust::device_vector<std::int32_t>& vector() const { return v_; }

   private:
    ::thrust::device_vector<std::int32_t> v_;
  };

  struct tensor {
    matrix data;
    Shape shape;
    index batch() const { return data.cols(); }
    index sample_size() const { return data.rows(); }
    void resize(const Shape& s, index batch) {
      shape = s;
      data.resize(static_cast<index>(s.size()), batch);
    }
  };

  static view_type view(float* p, index rows, index cols) { return {p, rows, cols}; }
  static const_view_type view(const float* p, index rows, index cols) { return {p, rows, cols}; }

  // ---- execution ----------------------------------------------------------------------------
  /// One part: a layer's chunk loop runs on the host, each chunk's kernels on the device.
  static int threads() { return 1; }
  template <class F>
  static void parallel_parts(index n, F&& f) {
    if (n > 0) f(0, index{0}, n);
  }
  template <class F>
  static void for_index(index n, F f) {
    if (n > 0) ::thrust::for_each_n(::thrust::device, ::thrust::counting_iterator<index>(0), n, f);
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
    buf.vector().assign(lab.begin(), lab.end());
    return buf.data();
  }
  static void download_ints(const int_buffer& b, std::int32_t* out) {
    ::thrust::copy(b.vector().begin(), b.vector().end(), out);
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
      throw shape_error(detail::cat(name, "::gemm: ", m, "x", k, " times ", (tb ? B.cols() : B.rows()), "x", n, " into ",
                            C.rows(), "x", C.cols()));
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty product (cuBLAS refuses leading dimensions of 0): C = beta C
      apply([=] FASTTRAIN_HD(float& c) { c *= beta; }, C);
      return;
    }
#if FASTTRAIN_THRUST_CUDA
    const cublasStatus_t st =
        cublasSgemm(cublas(), ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(m),
                    static_cast<int>(n), static_cast<int>(k), &alpha, A.data(), static_cast<int>(A.rows()), B.data(),
                    static_cast<int>(B.rows()), &beta, C.data(), static_cast<int>(C.rows()));
    if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(detail::cat(name, "::gemm: cublasSgemm failed with status ", int(st)));
#else
    using map = Eigen::Map<Eigen::MatrixXf>;
    using cmap = Eigen::Map<const Eigen::MatrixXf>;
    const cmap a(A.data(), A.rows(), A.cols()), b(B.data(), B.rows(), B.cols());
    map c(C.data(), C.rows(), C.cols());
    auto run = [&](const auto& x, const auto& y) {
      if (beta == 0.f) c.noalias() = alpha * (x * y);
      else {
        c *= beta;
        c.noalias() += alpha * (x * y);
      }
    };
    if (!ta && !tb) run(a, b);
    else if (ta && !tb) run(a.transpose(), b);
    else if (!ta && tb) run(a, b.transpose());
    else run(a.transpose(), b.transpose());
#endif
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
