// fasttrain/tensor/eigen.hpp -- the cpu::eigen backend (the default).
//
// A backend is a policy type: it names the storage types and the primitive operations
// the layers, losses and optimizers are written against. Layers call only these, so a
// backend that provides the same names runs every layer: cpu::xtensor (tensor/xtensor.hpp)
// and gpu::thrust (tensor/thrust.hpp) do, through tensor/kernels.hpp; docs/backends.md.
//
// Storage: `matrix` is column-major float; a batch has one sample per column, so a
// sample is contiguous (cheap gathers in the loader, cache-friendly per-sample ops) and
// a Linear layer is a single GEMM, Y = W X. `tensor` adds the per-sample Shape.
//
// The primitive set:
//   gemm(ta, tb, alpha, A, B, beta, C)     C = alpha op(A) op(B) + beta C
//   add_bias(Y, b)                         Y(:, j) += b           for every column j
//   row_sums(G, out)                       out = G 1              (bias gradients)
//   apply(f, m0, m1, ...)                  f(m0[i], m1[i], ...)   element-wise, any arity
//   sum(m), squared_norm(m), max_abs(m), all_finite(m)
//   softmax_columns(Z, P)                  numerically stable column softmax
//   argmax_columns(Z, out)                 predicted class per sample
//   fill_uniform / fill_normal / fill_bernoulli(m, ..., rng)
//   view(ptr, rows, cols)                  a rows x cols matrix over existing storage (no copy)
//   im2col / col2im                        convolution patches of NHWC samples, and their adjoint
//   max_pool / max_pool_backward, avg_pool / avg_pool_backward   NHWC pooling windows
//   for_index(n, f), for_index2(r, c, f)   f(k) / f(i, j) over indices: the kernels layers
//                                          write themselves (FASTTRAIN_HD lambdas over raw
//                                          pointers, so they run on gpu::thrust as well)
//   from_host(p, r, c, m), to_host(m, p)   copies between host floats and the backend's storage
//   int_buffer                             int32 storage of the backend (max-pool winners)
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/tensor/kernels.hpp"
#include "fasttrain/tensor/shape.hpp"

// Loops over independent samples or elements run on Eigen's thread count when the code is
// compiled with OpenMP (-fopenmp), and serially otherwise. `if` keeps small loops serial,
// where starting the threads would cost more than it saves.
#ifdef _OPENMP
#define FASTTRAIN_PARALLEL_FOR(work)                     \
  const bool fasttrain_parallel_ = (work) >= (1 << 16); \
  _Pragma("omp parallel for schedule(static) num_threads(Eigen::nbThreads()) if (fasttrain_parallel_)")
#else
#define FASTTRAIN_PARALLEL_FOR(work)
#endif

namespace fasttrain {

/// Sets the number of threads Eigen's GEMM uses (effective when built with OpenMP).
inline void set_threads(int n) {
  detail::require(n >= 1, "fasttrain::set_threads: thread count must be >= 1, got ", n);
  Eigen::setNbThreads(n);
}

namespace cpu {

struct eigen {
  static constexpr const char* name = "cpu::eigen";
  using scalar = float;
  using index = Eigen::Index;
  using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using labels = std::vector<std::int32_t>;
  /// What gemm takes: a matrix or a view over one (contiguous, column-major).
  template <class M>
  static constexpr bool is_dense_storage = std::is_same_v<M, matrix> || std::is_same_v<M, Eigen::Map<matrix>> ||
                                           std::is_same_v<M, Eigen::Map<const matrix>>;

  /// Threads the parallel primitives use (Eigen's thread count; 1 without OpenMP).
  static int threads() {
#ifdef _OPENMP
    return Eigen::nbThreads();
#else
    return 1;
#endif
  }
  /// Splits [0, n) into threads() contiguous parts and calls f(worker, first, count) for
  /// each non-empty part, in parallel. Inside f, GEMMs and the other primitives run on one
  /// thread (OpenMP does not nest), so f should be independent work per part.
  template <class F>
  static void parallel_parts(index n, F&& f) {
    const int parts = static_cast<int>(std::min<index>(threads(), std::max<index>(n, 1)));
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(parts)
#endif
    for (int w = 0; w < parts; ++w) {
      const index first = n * w / parts, last = n * (w + 1) / parts;
      if (last > first) f(w, first, last - first);
    }
  }

  /// A batch of activations: `data` is (sample size) x (batch), `shape` the sample's shape.
  using tensor = detail::batch_tensor<matrix>;

  /// f(k) for k in [0, n): the element loop the other primitives are built from (threads
  /// as FASTTRAIN_PARALLEL_FOR). Layers write element kernels with it, as FASTTRAIN_HD
  /// lambdas over raw pointers, so that the same code runs on gpu::thrust.
  template <class F>
  static void for_index(index n, F f) {
    FASTTRAIN_PARALLEL_FOR(n)
    for (index k = 0; k < n; ++k) f(k);
  }
  /// f(i, j) for every element of an r x c matrix, i (the row) fastest.
  template <class F>
  static void for_index2(index r, index c, F f) {
    FASTTRAIN_PARALLEL_FOR(r * c)
    for (index j = 0; j < c; ++j)
      for (index i = 0; i < r; ++i) f(i, j);
  }
  /// Host transfers: plain copies here (the storage is host memory).
  static void from_host(const float* p, index r, index c, matrix& m) { m = Eigen::Map<const matrix>(p, r, c); }
  template <class M>
  static void to_host(const M& m, float* p) {
    if (m.size()) std::memcpy(p, m.data(), static_cast<std::size_t>(m.size()) * sizeof(float));
  }
  /// int32 storage of the backend (max-pool winners).
  using int_buffer = std::vector<std::int32_t>;

  /// Bytes of patch matrix per chunk of samples in Conv2d: small enough to stay in cache
  /// (measured on the 2-core machine with bench_layers; see docs/design.md).
  static constexpr std::int64_t conv_chunk_bytes = std::int64_t{4} << 20;
  using view_type = Eigen::Map<matrix>;
  using const_view_type = Eigen::Map<const matrix>;
  /// A rows x cols column-major matrix over `p` (which must hold rows * cols floats).
  static view_type view(float* p, index rows, index cols) { return view_type(p, rows, cols); }
  static const_view_type view(const float* p, index rows, index cols) { return const_view_type(p, rows, cols); }

  // ---- linear algebra -------------------------------------------------------------
  /// C = alpha op(A) op(B) + beta C. A, B, C may be matrices or views; a matrix C is
  /// resized when beta == 0, a view must already have the right size. Every call goes
  /// through one non-template function over views (gemm_views), so a program instantiates
  /// Eigen's product code once, not once per combination of argument types and scalars.
  template <class MA, class MB, class MC>
  static void gemm(bool ta, bool tb, float alpha, const MA& A, const MB& B, float beta, MC&& C) {
    static_assert(is_dense_storage<MA> && is_dense_storage<MB> && is_dense_storage<std::decay_t<MC>>,
                  "cpu::eigen::gemm: A, B and C must be cpu::eigen::matrix or views over one (view())");
    const index m = ta ? A.cols() : A.rows();
    const index n = tb ? B.rows() : B.cols();
    if constexpr (std::is_same_v<std::decay_t<MC>, matrix>) {
      if (beta == 0.f) C.resize(m, n);
    }
    eigen_assert(C.rows() == m && C.cols() == n);
    gemm_views(ta, tb, alpha, view(A.data(), A.rows(), A.cols()), view(B.data(), B.rows(), B.cols()), beta,
               view(C.data(), m, n));
  }
  static void gemm_views(bool ta, bool tb, float alpha, const const_view_type& A, const const_view_type& B,
                         float beta, view_type C) {
    if (beta == 0.f)
      C.setZero();
    else if (beta != 1.f)
      C *= beta;
    if (!ta && !tb) C.noalias() += alpha * (A * B);
    else if (ta && !tb) C.noalias() += alpha * (A.transpose() * B);
    else if (!ta && tb) C.noalias() += alpha * (A * B.transpose());
    else C.noalias() += alpha * (A.transpose() * B.transpose());
  }

  template <class MY>
  static void add_bias(MY&& Y, const matrix& b) { Y.colwise() += b.col(0); }

  template <class MG>
  static void row_sums(const MG& G, matrix& out) { out.noalias() = G.rowwise().sum(); }

  // ---- element-wise ---------------------------------------------------------------
  /// Calls f(m0[i], m1[i], ...) for every element; all arguments must have equal size.
  /// A plain loop over raw pointers: g++ -O2 vectorises simple bodies.
  template <class F, class M0, class... Ms>
  static void apply(F&& f, M0&& m0, Ms&&... ms) {
    const index n = m0.size();
    eigen_assert(((ms.size() == n) && ...) && "cpu::eigen::apply: arguments of different sizes");
    auto* p0 = m0.data();
    auto ptrs = std::make_tuple(ms.data()...);
    std::apply(
        [&](auto*... ps) {
          FASTTRAIN_PARALLEL_FOR(n)
          for (index i = 0; i < n; ++i) f(p0[i], ps[i]...);
        },
        ptrs);
  }

  static float sum(const matrix& m) { return m.sum(); }
  static float squared_norm(const matrix& m) { return m.squaredNorm(); }
  static float max_abs(const matrix& m) { return m.size() ? m.cwiseAbs().maxCoeff() : 0.f; }
  /// x - x is 0 for a finite x and NaN for an infinite or NaN one, so the sum is 0 exactly
  /// when every element is finite: one vectorised pass (Eigen's allFinite is ~2x slower).
  static bool all_finite(const matrix& m) { return (m.array() - m.array()).sum() == 0.f; }
  /// The index of the first of `ms` holding a NaN or an infinity, or -1.
  static index first_nonfinite(const std::vector<const_view_type>& ms) {
    for (std::size_t i = 0; i < ms.size(); ++i)
      if (!((ms[i].array() - ms[i].array()).sum() == 0.f)) return static_cast<index>(i);
    return -1;
  }

  // ---- per-sample (column) operations -----------------------------------------------
  /// P(:, j) = softmax(Z(:, j)), computed as exp(z - max z) / sum. When `lse` is given it
  /// receives log(sum exp(Z(:, j))) per column, which cross_entropy_sum reuses.
  static void softmax_columns(const matrix& Z, matrix& P, matrix* lse = nullptr) {
    P.resize(Z.rows(), Z.cols());
    if (lse) lse->resize(1, Z.cols());
    for (index j = 0; j < Z.cols(); ++j) {
      const float mx = Z.col(j).maxCoeff();
      P.col(j) = (Z.col(j).array() - mx).exp();
      const float s = P.col(j).sum();
      P.col(j) /= s;
      if (lse) (*lse)(0, j) = mx + std::log(s);
    }
  }

  /// sum over samples j of -sum_k t_kj log softmax(Z(:, j))_k, with t the one-hot labels
  /// or the dense `soft` targets, given lse = log(sum exp(Z(:, j))) from softmax_columns.
  /// log softmax is z - lse, with lse computed max-shifted: no overflow, and no log(0)
  /// when a probability underflows.
  static double cross_entropy_sum(const matrix& Z, const matrix& lse, const labels* lab, const matrix* soft) {
    double total = 0.0;
    for (index j = 0; j < Z.cols(); ++j) {
      if (soft)
        total -= (soft->col(j).array() * (Z.col(j).array() - lse(0, j))).sum();
      else
        total -= Z((*lab)[static_cast<std::size_t>(j)], j) - lse(0, j);
    }
    return total;
  }

  /// G = scale * (P .* colsum(T) - T): the gradient of cross-entropy w.r.t. the logits.
  static void cross_entropy_grad(const matrix& P, const labels* lab, const matrix* soft, float scale,
                                 matrix& G) {
    G = P;
    if (soft) {
      for (index j = 0; j < P.cols(); ++j) G.col(j) = G.col(j) * soft->col(j).sum() - soft->col(j);
    } else {
      add_at_labels(G, *lab, -1.f);
    }
    G *= scale;
  }

  /// M(labels[j], j) += value for every column j. Labels must be in [0, M.rows()) (the
  /// callers check; see first_bad_label).
  static void add_at_labels(matrix& M, const labels& lab, float value) {
    for (index j = 0; j < M.cols(); ++j) M(lab[static_cast<std::size_t>(j)], j) += value;
  }

  /// Index of the first label outside [0, classes), or -1 when all are valid.
  static index first_bad_label(const labels& lab, index classes) {
    for (std::size_t j = 0; j < lab.size(); ++j)
      if (lab[j] < 0 || lab[j] >= classes) return static_cast<index>(j);
    return -1;
  }

  static void argmax_columns(const matrix& Z, labels& out) {
    out.resize(static_cast<std::size_t>(Z.cols()));
    for (index j = 0; j < Z.cols(); ++j) {
      index k = 0;
      Z.col(j).maxCoeff(&k);
      out[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(k);
    }
  }

  // ---- convolution and pooling on NHWC samples ----------------------------------------
  /// Geometry of a K x K window with stride S and zero padding P over an H x W image.
  struct window {
    index C, H, W, K, S, P, Ho, Wo;
    index patch() const { return K * K * C; }
    index out_pixels() const { return Ho * Wo; }
  };

  /// cols(:, (n - first) * Ho * Wo + oy * Wo + ox) = the K x K x C patch (rows ordered
  /// ky, kx, c with c fastest) of sample n at output pixel (oy, ox); zeros in the padding.
  /// Samples first .. first + count - 1 of the batch x. C and K are compile-time constants
  /// (the layer's), so the per-pixel copies of K*C floats compile to straight moves.
  template <std::int64_t C, std::int64_t K>
  static void im2col(const matrix& x, index first, index count, const window& g, matrix& cols) {
    eigen_assert(g.C == C && g.K == K);
    constexpr index row = K * C;  // floats in one kernel row of a patch
    cols.resize(g.patch(), g.out_pixels() * count);
    const index sample = C * g.H * g.W;
    FASTTRAIN_PARALLEL_FOR(count * g.out_pixels() * g.patch())
    for (index n = 0; n < count; ++n) {
      const float* img = x.data() + (first + n) * sample;
      float* out = cols.data() + n * g.out_pixels() * g.patch();
      for (index oy = 0; oy < g.Ho; ++oy)
        for (index ox = 0; ox < g.Wo; ++ox) {
          const index ix0 = ox * g.S - g.P;
          const bool inside_x = ix0 >= 0 && ix0 + K <= g.W;
          for (index ky = 0; ky < K; ++ky) {
            const index iy = oy * g.S - g.P + ky;
            float* dst = out + ky * row;
            if (iy < 0 || iy >= g.H) {
              for (index t = 0; t < row; ++t) dst[t] = 0.f;
            } else if (inside_x) {  // the whole kernel row is inside the image: one contiguous run
              const float* src = img + (iy * g.W + ix0) * C;
              for (index t = 0; t < row; ++t) dst[t] = src[t];
            } else {
              for (index kx = 0; kx < K; ++kx) {
                const index ix = ix0 + kx;
                const float* src = img + (iy * g.W + ix) * C;
                const bool in = ix >= 0 && ix < g.W;
                for (index c = 0; c < C; ++c) dst[kx * C + c] = in ? src[c] : 0.f;
              }
            }
          }
          out += g.patch();
        }
    }
  }

  /// The adjoint of im2col: dx(samples first ..) = sum of the patch gradients over every
  /// window each input pixel belongs to. Overwrites those samples of dx.
  template <std::int64_t C, std::int64_t K>
  static void col2im(const matrix& dcols, index first, index count, const window& g, matrix& dx) {
    eigen_assert(g.C == C && g.K == K);
    const index sample = C * g.H * g.W;
    FASTTRAIN_PARALLEL_FOR(count * g.out_pixels() * g.patch())
    for (index n = 0; n < count; ++n) {
      float* img = dx.data() + (first + n) * sample;
      std::fill(img, img + sample, 0.f);
      const float* in = dcols.data() + n * g.out_pixels() * g.patch();
      for (index oy = 0; oy < g.Ho; ++oy)
        for (index ox = 0; ox < g.Wo; ++ox) {
          for (index ky = 0; ky < K; ++ky) {
            const index iy = oy * g.S - g.P + ky;
            if (iy < 0 || iy >= g.H) continue;
            for (index kx = 0; kx < K; ++kx) {
              const index ix = ox * g.S - g.P + kx;
              if (ix < 0 || ix >= g.W) continue;
              float* d = img + (iy * g.W + ix) * C;
              const float* src = in + (ky * K + kx) * C;
              for (index c = 0; c < C; ++c) d[c] += src[c];
            }
          }
          in += g.patch();
        }
    }
  }

  /// Max over each K x K window (stride S, no padding); `arg` records the winning input
  /// offset within the sample for the backward pass. NaN wins (propagates).
  static void max_pool(const matrix& x, const window& g, matrix& y, std::vector<std::int32_t>& arg) {
    const index n = x.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    y.resize(out_sample, n);
    arg.resize(static_cast<std::size_t>(out_sample * n));
    FASTTRAIN_PARALLEL_FOR(n * in_sample)
    for (index s = 0; s < n; ++s) {
      const float* img = x.data() + s * in_sample;
      float* out = y.data() + s * out_sample;
      std::int32_t* a = arg.data() + s * out_sample;
      for (index oy = 0; oy < g.Ho; ++oy)
        for (index ox = 0; ox < g.Wo; ++ox) {
          const index o = (oy * g.Wo + ox) * g.C;
          const index base = ((oy * g.S) * g.W + ox * g.S) * g.C;
          for (index c = 0; c < g.C; ++c) {
            out[o + c] = img[base + c];
            a[o + c] = static_cast<std::int32_t>(base + c);
          }
          for (index ky = 0; ky < g.K; ++ky)
            for (index kx = 0; kx < g.K; ++kx) {
              if (ky == 0 && kx == 0) continue;
              const index off = ((oy * g.S + ky) * g.W + ox * g.S + kx) * g.C;
              for (index c = 0; c < g.C; ++c) {
                const float v = img[off + c];
                if (v > out[o + c] || v != v) {
                  out[o + c] = v;
                  a[o + c] = static_cast<std::int32_t>(off + c);
                }
              }
            }
        }
    }
  }
  static void max_pool_backward(const matrix& dy, const std::vector<std::int32_t>& arg, const window& g,
                                matrix& dx) {
    const index n = dy.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    dx.resize(in_sample, n);
    FASTTRAIN_PARALLEL_FOR(n * in_sample)
    for (index s = 0; s < n; ++s) {
      float* d = dx.data() + s * in_sample;
      std::fill(d, d + in_sample, 0.f);
      const float* src = dy.data() + s * out_sample;
      const std::int32_t* a = arg.data() + s * out_sample;
      for (index o = 0; o < out_sample; ++o) d[a[o]] += src[o];
    }
  }

  /// Mean over each K x K window (stride S, no padding).
  static void avg_pool(const matrix& x, const window& g, matrix& y) {
    const index n = x.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    const float scale = 1.f / static_cast<float>(g.K * g.K);
    y.setZero(out_sample, n);
    FASTTRAIN_PARALLEL_FOR(n * in_sample)
    for (index s = 0; s < n; ++s) {
      const float* img = x.data() + s * in_sample;
      float* out = y.data() + s * out_sample;
      for (index oy = 0; oy < g.Ho; ++oy)
        for (index ox = 0; ox < g.Wo; ++ox) {
          float* o = out + (oy * g.Wo + ox) * g.C;
          for (index ky = 0; ky < g.K; ++ky)
            for (index kx = 0; kx < g.K; ++kx) {
              const float* v = img + ((oy * g.S + ky) * g.W + ox * g.S + kx) * g.C;
              for (index c = 0; c < g.C; ++c) o[c] += v[c];
            }
          for (index c = 0; c < g.C; ++c) o[c] *= scale;
        }
    }
  }
  static void avg_pool_backward(const matrix& dy, const window& g, matrix& dx) {
    const index n = dy.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    const float scale = 1.f / static_cast<float>(g.K * g.K);
    dx.setZero(in_sample, n);
    FASTTRAIN_PARALLEL_FOR(n * in_sample)
    for (index s = 0; s < n; ++s) {
      float* d = dx.data() + s * in_sample;
      const float* src = dy.data() + s * out_sample;
      for (index oy = 0; oy < g.Ho; ++oy)
        for (index ox = 0; ox < g.Wo; ++ox) {
          const float* o = src + (oy * g.Wo + ox) * g.C;
          for (index ky = 0; ky < g.K; ++ky)
            for (index kx = 0; kx < g.K; ++kx) {
              float* v = d + ((oy * g.S + ky) * g.W + ox * g.S + kx) * g.C;
              for (index c = 0; c < g.C; ++c) v[c] += o[c] * scale;
            }
        }
    }
  }

  // ---- random fills ------------------------------------------------------------------
  static void fill_uniform(matrix& m, float lo, float hi, Rng& rng) {
    for (index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform(lo, hi);
  }
  static void fill_normal(matrix& m, float mean, float stddev, Rng& rng) {
    for (index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal(mean, stddev);
  }
  /// m[i] = (uniform < keep) ? scale : 0
  static void fill_bernoulli(matrix& m, float keep, float scale, Rng& rng) {
    for (index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform() < keep ? scale : 0.f;
  }
};

}  // namespace cpu

using default_backend = cpu::eigen;

}  // namespace fasttrain
