// fasttrain/train/buffers.hpp -- per-parameter state of a method on the model's backend, and
// host staging for the data methods written in Eigen.
//
// Methods are plain classes, not templates on the backend (so that recipes can name them,
// and order or forbid them by type: `runs_after = type_list<EMA>`). Their per-parameter
// state (EMA's averages, Lookahead's slow weights, SAM's saved weights, pruning masks) lives
// where the model's parameters live, so it is a ParamBuffers: its backend is fixed by the
// first typed access from a hook, where the model's type is known:
//
//   auto& avg = shadow_.on<typename Model::backend>();     // std::vector<B::matrix>&
//
// Checkpoints store host floats (`archive`), and a checkpoint read before the first typed
// access (a resumed run) is kept on the host until then, so state written on one backend
// loads on another.
#pragma once

#include <Eigen/Core>
#include <memory>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/tensor/eigen.hpp"

namespace fasttrain {

class ParamBuffers {
 public:
  using host_matrix = Eigen::MatrixXf;

  ParamBuffers() = default;
  ParamBuffers(const ParamBuffers& o) : h_(o.h_ ? o.h_->clone() : nullptr), pending_(o.pending_) {}
  ParamBuffers& operator=(const ParamBuffers& o) {
    if (this != &o) {
      h_ = o.h_ ? o.h_->clone() : nullptr;
      pending_ = o.pending_;
    }
    return *this;
  }
  ParamBuffers(ParamBuffers&&) noexcept = default;
  ParamBuffers& operator=(ParamBuffers&&) noexcept = default;

  /// The buffers on backend B (empty at first). Throws std::logic_error if they were
  /// created on another backend (one method object serves one model).
  template <class B>
  std::vector<typename B::matrix>& on() {
    if (!h_) {
      auto h = std::make_unique<holder<B>>();
      h->from_host(std::move(pending_));
      pending_.clear();
      h_ = std::move(h);
    }
    if (h_->backend() != typeid(B))
      throw std::logic_error(detail::cat("fasttrain::ParamBuffers: state held on ", h_->backend_name(),
                                         " is asked for on ", B::name, " (a method object serves one model)"));
    return static_cast<holder<B>*>(h_.get())->v;
  }

  bool empty() const { return size() == 0; }
  std::size_t size() const { return h_ ? h_->size() : pending_.size(); }
  /// Forgets the buffers and their backend.
  void clear() {
    h_.reset();
    pending_.clear();
  }
  /// Host copies of the buffers, in order.
  std::vector<host_matrix> to_host() const { return h_ ? h_->to_host() : pending_; }
  /// The buffers as host matrices, by reference: on cpu::eigen the buffers themselves (live);
  /// on another backend a copy that each call refreshes (valid until the next call).
  const std::vector<host_matrix>& host() const {
    if (!h_) return pending_;
    if (h_->backend() == typeid(cpu::eigen)) return static_cast<const holder<cpu::eigen>*>(h_.get())->v;
    cache_ = h_->to_host();
    return cache_;
  }

  /// Writes or reads the buffers as the record `name` of a checkpoint (host floats).
  template <class Archive>
  void archive(Archive& ar, std::string_view name) {
    if constexpr (Archive::saving) {
      const std::vector<host_matrix> host = to_host();
      ar(name, host);
    } else {
      std::vector<host_matrix> host;
      ar(name, host);
      if (h_) h_->from_host(std::move(host));
      else pending_ = std::move(host);
    }
  }

 private:
  struct holder_base {
    virtual ~holder_base() = default;
    virtual const std::type_info& backend() const = 0;
    virtual const char* backend_name() const = 0;
    virtual std::size_t size() const = 0;
    virtual std::vector<host_matrix> to_host() const = 0;
    virtual void from_host(std::vector<host_matrix>&& host) = 0;
    virtual std::unique_ptr<holder_base> clone() const = 0;
  };
  template <class B>
  struct holder final : holder_base {
    std::vector<typename B::matrix> v;
    const std::type_info& backend() const override { return typeid(B); }
    const char* backend_name() const override { return B::name; }
    std::size_t size() const override { return v.size(); }
    std::vector<host_matrix> to_host() const override {
      std::vector<host_matrix> out;
      out.reserve(v.size());
      for (const auto& m : v) {
        host_matrix h(m.rows(), m.cols());
        B::to_host(m, h.data());
        out.push_back(std::move(h));
      }
      return out;
    }
    void from_host(std::vector<host_matrix>&& host) override {
      v.resize(host.size());
      for (std::size_t i = 0; i < host.size(); ++i) B::from_host(host[i].data(), host[i].rows(), host[i].cols(), v[i]);
    }
    std::unique_ptr<holder_base> clone() const override { return std::make_unique<holder>(*this); }
  };

  std::unique_ptr<holder_base> h_;
  std::vector<host_matrix> pending_;        // read from a checkpoint before the backend was known
  mutable std::vector<host_matrix> cache_;  // host(): the last copy from another backend
};

/// Runs f(t) on the batch tensor `in` as a host cpu::eigen tensor: `in` itself on cpu::eigen;
/// on another backend a host copy, copied back afterwards (f may change its shape and size:
/// ProgressiveResizing). How the data methods written with Eigen (MixUp, CutOut, RandAugment,
/// ...) run everywhere: on a GPU it costs a copy of the batch each way per step.
template <class B, class F>
void with_host_tensor(typename B::tensor& in, F&& f) {
  if constexpr (std::is_same_v<B, cpu::eigen>) {
    f(in);
  } else {
    cpu::eigen::tensor host;
    host.shape = in.shape;
    host.data.resize(in.data.rows(), in.data.cols());
    B::to_host(in.data, host.data.data());
    f(host);
    B::from_host(host.data.data(), host.data.rows(), host.data.cols(), in.data);
    in.shape = host.shape;
  }
}

/// A host (Eigen) copy of a backend matrix: per-sample scores and losses read the outputs here.
template <class B>
Eigen::MatrixXf host_copy(const typename B::matrix& m) {
  Eigen::MatrixXf h(m.rows(), m.cols());
  B::to_host(m, h.data());
  return h;
}

namespace detail {
/// s = a s + (1 - a) p, element-wise on backend B: the running averages of EMA and SWA. A named
/// function, not a lambda in their hooks: nvcc compiles device lambdas only outside generic
/// lambdas and private members.
template <class B, class M>
void blend_into(M& s, const M& p, float a) {
  B::apply([=] FASTTRAIN_HD(float& si, const float& pi) { si = a * si + (1.f - a) * pi; }, s, p);
}
}  // namespace detail

}  // namespace fasttrain
