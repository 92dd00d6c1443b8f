// fasttrain/tensor/xtensor.hpp -- the cpu::xtensor backend: xtensor storage, xtensor-blas GEMM.
//
//   using Net = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>>::rebind<cpu::xtensor>;
//
// Not included by fasttrain.hpp: include this header (it needs Debian's xtensor-dev and
// libxtensor-blas-dev, and a CBLAS to link: CMake target fasttrain::xtensor in fasttrain's own
// build; the installed package exports it as a component: find_package(fasttrain COMPONENTS xtensor)).
//
// `matrix` owns an xt::xtensor<float, 2> in column-major layout, so a batch has the same
// memory layout as cpu::eigen's (one sample per column). GEMM goes through
// xt::blas::gemm (CBLAS); sums and norms are xtensor reducers; every other primitive is the
// raw-pointer kernel of tensor/kernels.hpp, run by for_index (serial loops: the BLAS threads).
// Results equal cpu::eigen's up to float rounding in a different summation order.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor-blas/xblas.hpp>

#include "fasttrain/tensor/kernels.hpp"

namespace fasttrain::cpu {

struct xtensor : detail::kernels<xtensor> {
  static constexpr const char* name = "cpu::xtensor";
  using scalar = float;
  using index = std::int64_t;
  using labels = std::vector<std::int32_t>;
  using storage = xt::xtensor<float, 2, xt::layout_type::column_major>;

  /// A rows x cols column-major float matrix held in an xt::xtensor. The members are the
  /// ones the layers use (Eigen's names, so that layer code reads the same on every backend).
  class matrix {
   public:
    using Scalar = float;
    matrix() = default;
    matrix(index r, index c) { resize(r, c); }
    static matrix Zero(index r, index c) {
      matrix m(r, c);
      m.setZero();
      return m;
    }
    index rows() const { return static_cast<index>(a_.shape()[0]); }
    index cols() const { return static_cast<index>(a_.shape()[1]); }
    index size() const { return static_cast<index>(a_.size()); }
    float* data() { return a_.data(); }
    const float* data() const { return a_.data(); }
    /// New size; the contents are unspecified after a change of size (as Eigen's resize).
    void resize(index r, index c) {
      if (r != rows() || c != cols()) a_.resize({static_cast<std::size_t>(r), static_cast<std::size_t>(c)});
    }
    void setZero() { std::fill(a_.begin(), a_.end(), 0.f); }
    void setZero(index r, index c) { resize(r, c), setZero(); }
    void setOnes() { std::fill(a_.begin(), a_.end(), 1.f); }
    void setOnes(index r, index c) { resize(r, c), setOnes(); }
    float& operator()(index i, index j) { return a_(static_cast<std::size_t>(i), static_cast<std::size_t>(j)); }
    float operator()(index i, index j) const { return a_(static_cast<std::size_t>(i), static_cast<std::size_t>(j)); }
    storage& xt() { return a_; }
    const storage& xt() const { return a_; }
    void swap(matrix& o) noexcept { std::swap(a_, o.a_); }

   private:
    storage a_ = storage::from_shape({0, 0});
  };
  using int_buffer = std::vector<std::int32_t>;

  using tensor = detail::batch_tensor<matrix>;

  // ---- execution --------------------------------------------------------------------------
  // Threads: the BLAS's own. Element loops run serially: OpenMP threads next to OpenBLAS's
  // pthreads made both spin-wait for the cores (bench_backends, MLP, 2 cores: 17k samples/s
  // with OpenMP element loops, 129k with serial ones).
  template <class F>
  static void for_index(index n, F f) {
    for (index k = 0; k < n; ++k) f(k);
  }
  template <class F>
  static void for_index2(index r, index c, F f) {
    for (index j = 0; j < c; ++j)
      for (index i = 0; i < r; ++i) f(i, j);
  }
  static void from_host(const float* p, index r, index c, matrix& m) {
    m.resize(r, c);
    if (r * c != 0) std::memcpy(m.data(), p, static_cast<std::size_t>(r * c) * sizeof(float));
  }
  template <class M>
  static void to_host(const M& m, float* p) {
    if (m.size()) std::memcpy(p, m.data(), static_cast<std::size_t>(m.size()) * sizeof(float));
  }
  static const std::int32_t* upload_labels(const labels& lab, int_buffer&) { return lab.data(); }
  static void download_ints(const int_buffer& b, std::int32_t* out) { std::copy(b.begin(), b.end(), out); }

  // ---- linear algebra -------------------------------------------------------------------------
  /// C = alpha op(A) op(B) + beta C through xt::blas::gemm. A matrix C is resized when
  /// beta == 0; a view must already have the right size.
  template <class MA, class MB, class MC>
  static void gemm(bool ta, bool tb, float alpha, const MA& A, const MB& B, float beta, MC&& C) {
    const index m = ta ? A.cols() : A.rows();
    const index n = tb ? B.rows() : B.cols();
    const index k = ta ? A.rows() : A.cols();
    if constexpr (std::is_same_v<std::decay_t<MC>, matrix>) {
      if (beta == 0.f) C.resize(m, n);
    }
    if (C.rows() != m || C.cols() != n || (tb ? B.cols() : B.rows()) != k)
      throw shape_error(detail::cat("cpu::xtensor::gemm: ", m, "x", k, " times ", (tb ? B.cols() : B.rows()), "x", n,
                            " into ", C.rows(), "x", C.cols()));
    if (m == 0 || n == 0) return;
    if (k == 0) {  // BLAS leaves C alone when k = 0; the product is zero
      apply([=](float& c) { c *= beta; }, C);
      return;
    }
    auto a = adapt(A), b = adapt(B);
    auto c = adapt(C);
    xt::blas::gemm(a, b, c, ta, tb, alpha, beta);
  }

  // ---- reductions: xtensor reducers over the storage --------------------------------------------
  template <class M>
  static float sum(const M& m) { return m.size() ? xt::sum(adapt(m))() : 0.f; }
  template <class M>
  static float squared_norm(const M& m) {
    if (!m.size()) return 0.f;
    auto a = adapt(m);
    return xt::sum(a * a)();
  }
  template <class M>
  static float max_abs(const M& m) { return m.size() ? xt::amax(xt::abs(adapt(m)))() : 0.f; }
  /// x - x is 0 for a finite x and NaN otherwise: the sum is 0 exactly when all are finite.
  template <class M>
  static bool all_finite(const M& m) {
    if (!m.size()) return true;
    auto a = adapt(m);
    return xt::sum(a - a)() == 0.f;
  }

 private:
  template <class M>
  static auto adapt(M&& m) {
    const std::array<std::size_t, 2> shape{static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
    return xt::adapt<xt::layout_type::column_major>(const_cast<float*>(m.data()), static_cast<std::size_t>(m.size()),
                                                    xt::no_ownership(), shape);
  }
};

}  // namespace fasttrain::cpu
