// fasttrain/nn/loss.hpp -- losses: softmax cross-entropy and mean squared error.
//
// A loss takes the network's output and the targets, returns the mean loss over the
// batch, and then gives dL/d(output). Targets are class labels, or -- when a method
// such as LabelSmoothing or MixUp replaces them -- a dense matrix of per-class target
// values (one column per sample). Every loss accepts both.
//
//   nn::SoftmaxCrossEntropy loss;
//   float l = loss.forward(logits, targets);
//   loss.backward(dlogits);
#pragma once

#include <string>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

/// What a loss compares the output with. `soft`, when set, takes precedence over `labels`.
template <class B = default_backend>
struct Targets {
  const typename B::labels* labels = nullptr;
  const typename B::matrix* soft = nullptr;
};

namespace detail {
template <class B>
void check_targets(const char* who, const typename B::tensor& out, const Targets<B>& t) {
  const auto n = out.batch();
  const auto k = out.sample_size();
  if (t.soft) {
    if (t.soft->rows() != k || t.soft->cols() != n)
      throw shape_error(std::string(who) + ": soft targets are " + std::to_string(t.soft->rows()) + "x" +
                        std::to_string(t.soft->cols()) + ", expected " + std::to_string(k) + "x" +
                        std::to_string(n) + " (classes x batch)");
    return;
  }
  if (!t.labels) throw shape_error(std::string(who) + ": no targets given");
  if (static_cast<std::int64_t>(t.labels->size()) != n)
    throw shape_error(std::string(who) + ": " + std::to_string(t.labels->size()) + " labels for a batch of " +
                      std::to_string(n));
  for (std::size_t j = 0; j < t.labels->size(); ++j)
    if ((*t.labels)[j] < 0 || (*t.labels)[j] >= k)
      throw shape_error(std::string(who) + ": label " + std::to_string((*t.labels)[j]) + " at batch index " +
                        std::to_string(j) + " is out of range [0, " + std::to_string(k) + ")");
}
}  // namespace detail

/// Mean over the batch of -sum_k t_k log softmax(z)_k, computed stably (max-shifted).
template <class B = default_backend>
class BasicSoftmaxCrossEntropy {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  using matrix = typename B::matrix;
  static std::string name() { return "SoftmaxCrossEntropy"; }

  float forward(const tensor& logits, const Targets<B>& t) {
    detail::check_targets<B>("fasttrain::nn::SoftmaxCrossEntropy", logits, t);
    targets_ = t;
    B::softmax_columns(logits.data, prob_, &lse_);
    const double total = B::cross_entropy_sum(logits.data, lse_, t.soft ? nullptr : t.labels, t.soft);
    return static_cast<float>(total / static_cast<double>(logits.batch()));
  }

  /// dL/dz = (p * sum_k t_k - t) / n for the last forward().
  void backward(tensor& dlogits) {
    dlogits.shape = Shape(prob_.rows());
    B::cross_entropy_grad(prob_, targets_.soft ? nullptr : targets_.labels, targets_.soft,
                          1.f / static_cast<float>(prob_.cols()), dlogits.data);
  }

  const matrix& probabilities() const { return prob_; }

 private:
  matrix prob_, lse_;
  Targets<B> targets_;
};
using SoftmaxCrossEntropy = BasicSoftmaxCrossEntropy<>;

/// Mean over all elements of (y - t)^2; class labels become one-hot targets.
template <class B = default_backend>
class BasicMSE {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  using matrix = typename B::matrix;
  static std::string name() { return "MSE"; }

  float forward(const tensor& out, const Targets<B>& t) {
    detail::check_targets<B>("fasttrain::nn::MSE", out, t);
    diff_ = out.data;
    if (t.soft)
      B::apply([] FASTTRAIN_HD(float& d, const float& ti) { d -= ti; }, diff_, *t.soft);
    else
      B::add_at_labels(diff_, *t.labels, -1.f);
    return B::squared_norm(diff_) / static_cast<float>(diff_.size());
  }

  void backward(tensor& dout) {
    dout.shape = Shape(diff_.rows());
    dout.data.resize(diff_.rows(), diff_.cols());
    const float k = 2.f / static_cast<float>(diff_.size());
    B::apply([=] FASTTRAIN_HD(float& g, const float& d) { g = k * d; }, dout.data, diff_);
  }

 private:
  matrix diff_;
};
using MSE = BasicMSE<>;

}  // namespace fasttrain::nn
