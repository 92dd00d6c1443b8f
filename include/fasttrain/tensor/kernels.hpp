// fasttrain/tensor/kernels.hpp -- the primitive set written once over raw pointers, for the
// backends whose storage is not Eigen's (cpu::xtensor, gpu::thrust).
//
// A backend D that derives from `kernels<D>` provides only its storage and four things:
//   D::for_index(n, f)          f(k) for k in [0, n), in any order, possibly in parallel
//   D::for_index2(r, c, f)      f(i, j) for i in [0, r), j in [0, c) (i fastest)
//   D::from_host(p, r, c, m)    m = the r x c column-major floats at host pointer p
//   D::to_host(m, p)            the floats of m to host pointer p
// and inherits every other primitive of the contract in tensor/eigen.hpp, built on those.
// A backend overrides a primitive by declaring a static function of the same name
// (gpu::thrust reduces with thrust::reduce, cpu::xtensor multiplies with xtensor-blas).
//
// Every kernel body is a FASTTRAIN_HD lambda capturing raw pointers by value: under nvcc it
// is compiled for the GPU as well (nvcc --extended-lambda), under g++ it is a plain lambda.
// Sums over a column or a row run sequentially inside one call of f, in the same order as
// cpu::eigen where that matters for equality (cross-entropy sums in double on the host).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/tensor/shape.hpp"

#if defined(__CUDACC__)
#define FASTTRAIN_HD __host__ __device__
#else
#define FASTTRAIN_HD
#endif

namespace fasttrain::detail {

/// A rows x cols column-major matrix over storage it does not own: what `view` returns on
/// the raw-pointer backends.
template <class T>
struct raw_view {
  using Scalar = std::remove_const_t<T>;
  T* p;
  std::int64_t r, c;
  T* data() const { return p; }
  std::int64_t rows() const { return r; }
  std::int64_t cols() const { return c; }
  std::int64_t size() const { return r * c; }
};

/// A batch of activations on any backend: `data` is (sample size) x (batch), one sample per
/// column; `shape` is the sample's shape. Every backend's `tensor` is this, over its matrix.
template <class Matrix>
struct batch_tensor {
  Matrix data;
  Shape shape;

  auto batch() const { return data.cols(); }
  auto sample_size() const { return data.rows(); }
  /// Resizes for `batch` samples of `s` (no reallocation when the size is unchanged).
  void resize(const Shape& s, std::int64_t batch) {
    shape = s;
    data.resize(static_cast<std::int64_t>(s.size()), batch);
  }
};

/// Geometry of a K x K window with stride S and zero padding P over an H x W image (the
/// same fields as cpu::eigen::window).
struct window_geometry {
  std::int64_t C, H, W, K, S, P, Ho, Wo;
  std::int64_t patch() const { return K * K * C; }
  std::int64_t out_pixels() const { return Ho * Wo; }
};

template <class D>
struct kernels {
  using index = std::int64_t;
  using labels = std::vector<std::int32_t>;
  using window = window_geometry;
  using view_type = raw_view<float>;
  using const_view_type = raw_view<const float>;

  /// A rows x cols matrix over storage the caller owns (no copy).
  static view_type view(float* p, index rows, index cols) { return {p, rows, cols}; }
  static const_view_type view(const float* p, index rows, index cols) { return {p, rows, cols}; }

  /// Bytes of patch matrix per chunk of samples in Conv2d (nn/conv.hpp): a CPU backend keeps
  /// a chunk in cache; a GPU backend overrides it to cover whole batches.
  static constexpr std::int64_t conv_chunk_bytes = std::int64_t{4} << 20;

  /// One part: layers' per-sample chunk loops run serially on the host; the parallelism is
  /// inside the primitives (the device, or the BLAS's threads).
  static int threads() { return 1; }
  template <class F>
  static void parallel_parts(index n, F&& f) {
    if (n > 0) f(0, index{0}, n);
  }

  // ---- bias and row sums --------------------------------------------------------------
  template <class MY, class MB>
  static void add_bias(MY&& Y, const MB& b) {
    float* y = Y.data();
    const float* pb = b.data();
    const index r = Y.rows();
    D::for_index2(r, Y.cols(), [=] FASTTRAIN_HD(index i, index j) { y[i + j * r] += pb[i]; });
  }
  /// out = G 1. A wide matrix is summed in passes, so that the work spreads over many
  /// threads (a GPU needs tens of thousands): each pass cuts the columns into runs of
  /// row_sum_run and sums each (row, run) in one call of f (consecutive calls read
  /// consecutive rows of a column: coalesced on a GPU), until one run is left, which the
  /// last pass sums per row. The cut depends only on the size: the result is deterministic.
  static constexpr index row_sum_run = 64;
  template <class MG, class MO>
  static void row_sums(const MG& G, MO& out) {
    const index r = G.rows();
    index cols = G.cols();
    out.resize(r, 1);
    const float* src = G.data();
    typename D::matrix partial[2];
    for (int pass = 0; cols > row_sum_run; ++pass) {
      const index runs = (cols + row_sum_run - 1) / row_sum_run, n = cols;
      typename D::matrix& to = partial[pass % 2];
      to.resize(r, runs);
      float* dst = to.data();
      D::for_index(r * runs, [=] FASTTRAIN_HD(index k) {
        const index i = k % r, first = (k / r) * row_sum_run, end = first + row_sum_run < n ? first + row_sum_run : n;
        float s = 0.f;
        for (index j = first; j < end; ++j) s += src[i + j * r];
        dst[k] = s;
      });
      src = dst;
      cols = runs;
    }
    float* o = out.data();
    const index n = cols;
    D::for_index(r, [=] FASTTRAIN_HD(index i) {
      float s = 0.f;
      for (index j = 0; j < n; ++j) s += src[i + j * r];
      o[i] = s;
    });
  }

  /// The index of the first of `ms` holding a NaN or an infinity, or -1. One flag per
  /// matrix, set by its kernel and read back once: one wait for all of them.
  static index first_nonfinite(const std::vector<const_view_type>& ms) {
    if (ms.empty()) return -1;
    typename D::int_buffer flags;
    flags.resize(ms.size());
    std::int32_t* f = flags.data();
    D::for_index(static_cast<index>(ms.size()), [=] FASTTRAIN_HD(index i) { f[i] = 0; });
    for (std::size_t i = 0; i < ms.size(); ++i) {
      const float* p = ms[i].data();
      std::int32_t* fi = f + i;
      D::for_index(ms[i].size(), [=] FASTTRAIN_HD(index k) {
        if (!(p[k] - p[k] == 0.f)) *fi = 1;  // NaN and +-inf give NaN; every writer writes 1
      });
    }
    std::vector<std::int32_t> h(ms.size());
    D::download_ints(flags, h.data());
    for (std::size_t i = 0; i < h.size(); ++i)
      if (h[i]) return static_cast<index>(i);
    return -1;
  }

  // ---- element-wise ---------------------------------------------------------------------
  /// f(m0[i], m1[i], ...) for every element; f must be a FASTTRAIN_HD callable.
  template <class F, class M0, class... Ms>
  static void apply(F f, M0&& m0, Ms&&... ms) {
    const index n = m0.size();
    if (((ms.size() != n) || ...))
      throw shape_error(cat(D::name, "::apply: arguments of different sizes"));
    apply_ptrs(f, n, m0.data(), ms.data()...);
  }

  // ---- per-sample (column) operations ---------------------------------------------------
  template <class MZ, class MP>
  static void softmax_columns(const MZ& Z, MP& P, MP* lse = nullptr) {
    const index r = Z.rows(), c = Z.cols();
    P.resize(r, c);
    if (lse) lse->resize(1, c);
    const float* z = Z.data();
    float* p = P.data();
    float* l = lse ? lse->data() : nullptr;
    D::for_index(c, [=] FASTTRAIN_HD(index j) {
      const float* zj = z + j * r;
      float* pj = p + j * r;
      float mx = zj[0];
      for (index i = 1; i < r; ++i) mx = zj[i] > mx ? zj[i] : mx;
      float s = 0.f;
      for (index i = 0; i < r; ++i) s += (pj[i] = expf_(zj[i] - mx));
      for (index i = 0; i < r; ++i) pj[i] /= s;
      if (l) l[j] = mx + logf_(s);
    });
  }

  /// The per-sample cross-entropies are computed by the backend; their sum is taken on the
  /// host in double, in sample order (as cpu::eigen does).
  template <class MZ, class ML, class MS>
  static double cross_entropy_sum(const MZ& Z, const ML& lse, const labels* lab, const MS* soft) {
    const index r = Z.rows(), c = Z.cols();
    typename D::matrix per(1, c);
    const float* z = Z.data();
    const float* l = lse.data();
    const float* t = soft ? soft->data() : nullptr;
    typename D::int_buffer dl;
    const std::int32_t* y = lab ? D::upload_labels(*lab, dl) : nullptr;
    float* o = per.data();
    D::for_index(c, [=] FASTTRAIN_HD(index j) {
      if (t) {
        float s = 0.f;
        for (index i = 0; i < r; ++i) s += t[i + j * r] * (z[i + j * r] - l[j]);
        o[j] = -s;
      } else {
        o[j] = -(z[y[j] + j * r] - l[j]);
      }
    });
    std::vector<float> h(static_cast<std::size_t>(c));
    D::to_host(per, h.data());
    double total = 0.0;
    for (float v : h) total += static_cast<double>(v);
    return total;
  }

  /// G = scale * (P .* colsum(T) - T).
  template <class MP, class MS, class MG>
  static void cross_entropy_grad(const MP& P, const labels* lab, const MS* soft, float scale, MG& G) {
    const index r = P.rows(), c = P.cols();
    G.resize(r, c);
    const float* p = P.data();
    const float* t = soft ? soft->data() : nullptr;
    typename D::int_buffer dl;
    const std::int32_t* y = lab ? D::upload_labels(*lab, dl) : nullptr;
    float* g = G.data();
    D::for_index(c, [=] FASTTRAIN_HD(index j) {
      const index o = j * r;
      if (t) {
        float ts = 0.f;
        for (index i = 0; i < r; ++i) ts += t[o + i];
        for (index i = 0; i < r; ++i) g[o + i] = (p[o + i] * ts - t[o + i]) * scale;
      } else {
        for (index i = 0; i < r; ++i) g[o + i] = p[o + i] * scale;
        g[o + y[j]] = (p[o + y[j]] - 1.f) * scale;
      }
    });
  }

  template <class M>
  static void add_at_labels(M& m, const labels& lab, float value) {
    typename D::int_buffer dl;
    const std::int32_t* y = D::upload_labels(lab, dl);
    float* p = m.data();
    const index r = m.rows();
    D::for_index(m.cols(), [=] FASTTRAIN_HD(index j) { p[y[j] + j * r] += value; });
  }

  static index first_bad_label(const labels& lab, index classes) {
    for (std::size_t j = 0; j < lab.size(); ++j)
      if (lab[j] < 0 || lab[j] >= classes) return static_cast<index>(j);
    return -1;
  }

  /// Index of the largest value per column (the first one on ties, as Eigen's maxCoeff).
  template <class MZ>
  static void argmax_columns(const MZ& Z, labels& out) {
    const index r = Z.rows(), c = Z.cols();
    typename D::int_buffer arg;
    arg.resize(static_cast<std::size_t>(c));
    std::int32_t* a = arg.data();
    const float* z = Z.data();
    D::for_index(c, [=] FASTTRAIN_HD(index j) {
      index k = 0;
      for (index i = 1; i < r; ++i)
        if (z[i + j * r] > z[k + j * r]) k = i;
      a[j] = static_cast<std::int32_t>(k);
    });
    out.resize(static_cast<std::size_t>(c));
    D::download_ints(arg, out.data());
  }

  // ---- convolution and pooling on NHWC samples ------------------------------------------
  /// One call of f per element of the patch matrix (K*K*C rows, one column per output pixel
  /// of each sample; zeros in the padding). Consecutive calls write consecutive rows and read
  /// consecutive channels of one input pixel: coalesced on a GPU.
  template <std::int64_t C, std::int64_t K, class MX, class MC>
  static void im2col(const MX& x, index first, index count, const window& g, MC& cols) {
    cols.resize(K * K * C, g.out_pixels() * count);
    const float* in = x.data() + first * C * g.H * g.W;
    float* out = cols.data();
    const window w = g;
    const index total = count * g.out_pixels() * K * K * C;
    if (total < (index{1} << 31))  // 32-bit index arithmetic: several times faster on a GPU
      D::for_index(total, [=] FASTTRAIN_HD(index e) { out[e] = patch_value<C, K, std::int32_t>(in, e, w); });
    else
      D::for_index(total, [=] FASTTRAIN_HD(index e) { out[e] = patch_value<C, K, index>(in, e, w); });
  }
  /// Element e of the patch matrix, computed in index type I.
  template <std::int64_t C, std::int64_t K, class I>
  static FASTTRAIN_HD float patch_value(const float* in, index e64, const window& w) {
    constexpr I patch = static_cast<I>(K * K * C), c_ = static_cast<I>(C), k_ = static_cast<I>(K);
    const I e = static_cast<I>(e64), Ho = static_cast<I>(w.Ho), Wo = static_cast<I>(w.Wo);
    const I H = static_cast<I>(w.H), W = static_cast<I>(w.W), S = static_cast<I>(w.S), P = static_cast<I>(w.P);
    const I row = e % patch, col = e / patch;
    const I c = row % c_, kx = (row / c_) % k_, ky = row / (c_ * k_);
    const I n = col / (Ho * Wo), pix = col % (Ho * Wo);
    const I iy = (pix / Wo) * S - P + ky, ix = (pix % Wo) * S - P + kx;
    return iy >= 0 && iy < H && ix >= 0 && ix < W ? in[(static_cast<index>(n * H + iy) * W + ix) * C + c] : 0.f;
  }
  /// The adjoint of im2col, as a gather: one call of f per input value sums the patch
  /// entries that copied it (no two calls write the same place, so no atomics on a GPU).
  template <std::int64_t C, std::int64_t K, class MC, class MX>
  static void col2im(const MC& dcols, index first, index count, const window& g, MX& dx) {
    const float* in = dcols.data();
    float* out = dx.data() + first * C * g.H * g.W;
    const window w = g;
    const index total = count * g.H * g.W * C;
    if (total < (index{1} << 31) && count * g.out_pixels() * K * K * C < (index{1} << 31))
      D::for_index(total, [=] FASTTRAIN_HD(index k) { out[k] = gathered_value<C, K, std::int32_t>(in, k, w); });
    else
      D::for_index(total, [=] FASTTRAIN_HD(index k) { out[k] = gathered_value<C, K, index>(in, k, w); });
  }
  /// Input value k's gradient: the sum of the patch entries that copied it, in index type I.
  template <std::int64_t C, std::int64_t K, class I>
  static FASTTRAIN_HD float gathered_value(const float* in, index k64, const window& w) {
    constexpr I patch = static_cast<I>(K * K * C), c_ = static_cast<I>(C);
    const I k = static_cast<I>(k64), Ho = static_cast<I>(w.Ho), Wo = static_cast<I>(w.Wo);
    const I H = static_cast<I>(w.H), W = static_cast<I>(w.W), S = static_cast<I>(w.S), P = static_cast<I>(w.P);
    const I c = k % c_, pix = (k / c_) % (H * W), n = k / (c_ * H * W);
    const I iy = pix / W, ix = pix % W;
    float acc = 0.f;
    for (I ky = 0; ky < static_cast<I>(K); ++ky) {
      const I ty = iy + P - ky;
      if (ty < 0 || ty % S != 0 || ty / S >= Ho) continue;
      for (I kx = 0; kx < static_cast<I>(K); ++kx) {
        const I tx = ix + P - kx;
        if (tx < 0 || tx % S != 0 || tx / S >= Wo) continue;
        acc += in[static_cast<index>((n * Ho + ty / S) * Wo + tx / S) * patch + (ky * static_cast<I>(K) + kx) * c_ + c];
      }
    }
    return acc;
  }

  /// Max over each window; `arg` receives the winning input offset within the sample. NaN
  /// wins (propagates). One call of f per output value.
  template <class MX, class MY, class A>
  static void max_pool(const MX& x, const window& g, MY& y, A& arg) {
    const index n = x.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    y.resize(out_sample, n);
    arg.resize(static_cast<std::size_t>(out_sample * n));
    const float* in = x.data();
    float* out = y.data();
    std::int32_t* a = arg.data();
    const window w = g;
    D::for_index(out_sample * n, [=] FASTTRAIN_HD(index k) {
      const index s = k / out_sample, o = k % out_sample, c = o % w.C, pix = o / w.C;
      const index oy = pix / w.Wo, ox = pix % w.Wo;
      const float* img = in + s * in_sample;
      index best = ((oy * w.S) * w.W + ox * w.S) * w.C + c;
      float v = img[best];
      for (index ky = 0; ky < w.K; ++ky)
        for (index kx = 0; kx < w.K; ++kx) {
          const index off = ((oy * w.S + ky) * w.W + ox * w.S + kx) * w.C + c;
          const float u = img[off];
          if (u > v || u != u) {
            v = u;
            best = off;
          }
        }
      out[k] = v;
      a[k] = static_cast<std::int32_t>(best);
    });
  }
  template <class MY, class A, class MX>
  static void max_pool_backward(const MY& dy, const A& arg, const window& g, MX& dx) {
    const index n = dy.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    dx.resize(in_sample, n);
    dx.setZero();
    const float* src = dy.data();
    const std::int32_t* a = arg.data();
    float* d = dx.data();
    if (g.S >= g.K) {  // windows do not overlap: each input value has at most one writer
      D::for_index(out_sample * n, [=] FASTTRAIN_HD(index k) { d[(k / out_sample) * in_sample + a[k]] += src[k]; });
    } else {
      D::for_index(n, [=] FASTTRAIN_HD(index s) {
        for (index o = 0; o < out_sample; ++o) d[s * in_sample + a[s * out_sample + o]] += src[s * out_sample + o];
      });
    }
  }

  template <class MX, class MY>
  static void avg_pool(const MX& x, const window& g, MY& y) {
    const index n = x.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    y.resize(out_sample, n);
    const float scale = 1.f / static_cast<float>(g.K * g.K);
    const float* in = x.data();
    float* out = y.data();
    const window w = g;
    D::for_index(out_sample * n, [=] FASTTRAIN_HD(index k) {
      const index s = k / out_sample, o = k % out_sample, c = o % w.C, pix = o / w.C;
      const index oy = pix / w.Wo, ox = pix % w.Wo;
      const float* img = in + s * in_sample;
      float acc = 0.f;
      for (index ky = 0; ky < w.K; ++ky)
        for (index kx = 0; kx < w.K; ++kx) acc += img[((oy * w.S + ky) * w.W + ox * w.S + kx) * w.C + c];
      out[k] = acc * scale;
    });
  }
  template <class MY, class MX>
  static void avg_pool_backward(const MY& dy, const window& g, MX& dx) {
    const index n = dy.cols(), in_sample = g.C * g.H * g.W, out_sample = g.C * g.Ho * g.Wo;
    dx.resize(in_sample, n);
    dx.setZero();
    const float scale = 1.f / static_cast<float>(g.K * g.K);
    const float* src = dy.data();
    float* d = dx.data();
    const window w = g;
    auto spread = [=] FASTTRAIN_HD(index s, index o) {
      const index c = o % w.C, pix = o / w.C, oy = pix / w.Wo, ox = pix % w.Wo;
      const float v = src[s * out_sample + o] * scale;
      for (index ky = 0; ky < w.K; ++ky)
        for (index kx = 0; kx < w.K; ++kx) d[s * in_sample + ((oy * w.S + ky) * w.W + ox * w.S + kx) * w.C + c] += v;
    };
    if (g.S >= g.K)
      D::for_index(out_sample * n, [=] FASTTRAIN_HD(index k) { spread(k / out_sample, k % out_sample); });
    else
      D::for_index(n, [=] FASTTRAIN_HD(index s) {
        for (index o = 0; o < out_sample; ++o) spread(s, o);
      });
  }

  // ---- random fills: drawn on the host from the same Rng stream as cpu::eigen -------------
  template <class M>
  static void fill_uniform(M& m, float lo, float hi, Rng& rng) {
    std::vector<float> h(static_cast<std::size_t>(m.size()));
    for (auto& v : h) v = rng.uniform(lo, hi);
    D::from_host(h.data(), m.rows(), m.cols(), m);
  }
  template <class M>
  static void fill_normal(M& m, float mean, float stddev, Rng& rng) {
    std::vector<float> h(static_cast<std::size_t>(m.size()));
    for (auto& v : h) v = rng.normal(mean, stddev);
    D::from_host(h.data(), m.rows(), m.cols(), m);
  }
  template <class M>
  static void fill_bernoulli(M& m, float keep, float scale, Rng& rng) {
    std::vector<float> h(static_cast<std::size_t>(m.size()));
    for (auto& v : h) v = rng.uniform() < keep ? scale : 0.f;
    D::from_host(h.data(), m.rows(), m.cols(), m);
  }

  // One function per arity: nvcc's extended lambdas cannot capture a parameter pack.
  template <class F, class P0>
  static void apply_ptrs(F f, index n, P0* a) {
    D::for_index(n, [=] FASTTRAIN_HD(index k) { f(a[k]); });
  }
  template <class F, class P0, class P1>
  static void apply_ptrs(F f, index n, P0* a, P1* b) {
    D::for_index(n, [=] FASTTRAIN_HD(index k) { f(a[k], b[k]); });
  }
  template <class F, class P0, class P1, class P2>
  static void apply_ptrs(F f, index n, P0* a, P1* b, P2* c) {
    D::for_index(n, [=] FASTTRAIN_HD(index k) { f(a[k], b[k], c[k]); });
  }
  template <class F, class P0, class P1, class P2, class P3>
  static void apply_ptrs(F f, index n, P0* a, P1* b, P2* c, P3* d) {
    D::for_index(n, [=] FASTTRAIN_HD(index k) { f(a[k], b[k], c[k], d[k]); });
  }
  template <class F, class P0, class P1, class P2, class P3, class P4>
  static void apply_ptrs(F f, index n, P0* a, P1* b, P2* c, P3* d, P4* e) {
    D::for_index(n, [=] FASTTRAIN_HD(index k) { f(a[k], b[k], c[k], d[k], e[k]); });
  }
  static FASTTRAIN_HD float expf_(float x) { return ::expf(x); }
  static FASTTRAIN_HD float logf_(float x) { return ::logf(x); }
};

}  // namespace fasttrain::detail
