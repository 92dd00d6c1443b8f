// fasttrain/methods/optim/label_smoothing.hpp -- LabelSmoothing (optimization / replace).
//
// Replaces the one-hot target of each sample by (1 - s) * one_hot + s / K, K classes
// (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7). It discourages
// over-confident logits and usually improves accuracy at no measurable cost.
//
//   Trainer t{model, opt, nn::SoftmaxCrossEntropy{}, methods::LabelSmoothing{0.1f}};
//
// Hooks: before_loss (install smoothed dense targets), after_loss (restore the previous
// targets; after_* events run in reverse, so it undoes exactly what it did). When another
// method has already replaced the targets by dense ones (MixUp), those are smoothed.
// Works with any loss that takes dense targets (every fasttrain loss does).
#pragma once

#include <string>

#include "fasttrain/core/error.hpp"
#include "fasttrain/nn/loss.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

/// Plain function form: out(:, j) = (1 - s) one_hot(labels[j]) + s / K.
/// Throws shape_error for a label outside [0, num_classes).
template <class B = default_backend>
void smooth_labels(const typename B::labels& labels, std::int64_t num_classes, float smoothing,
                   typename B::matrix& out) {
  if (const auto j = B::first_bad_label(labels, num_classes); j >= 0)
    throw shape_error(fasttrain::detail::cat("fasttrain::methods::LabelSmoothing: label ",
                                             labels[static_cast<std::size_t>(j)], " at batch index ", j,
                                             " is out of range [0, ", num_classes, ")"));
  out.resize(num_classes, static_cast<typename B::index>(labels.size()));
  const float u = smoothing / static_cast<float>(num_classes);
  B::apply([=] FASTTRAIN_HD(float& o) { o = u; }, out);
  B::add_at_labels(out, labels, 1.f - smoothing);
}

/// Plain function form for dense targets: out = (1 - s) t + s / K.
template <class B = default_backend>
void smooth_targets(const typename B::matrix& t, float smoothing, typename B::matrix& out) {
  const float u = smoothing / static_cast<float>(t.rows());
  out.resize(t.rows(), t.cols());
  B::apply([=] FASTTRAIN_HD(const float& ti, float& oi) { oi = (1.f - smoothing) * ti + u; }, t, out);
}

class LabelSmoothing {
 public:
  static constexpr taxonomy tag{component::optimization, action::replace};
  using events = fasttrain::events<event::before_loss, event::after_loss>;

  /// smoothing in [0, 1): the probability mass spread uniformly over all classes.
  explicit LabelSmoothing(float smoothing = 0.1f) : smoothing_(smoothing) {
    fasttrain::detail::require(smoothing >= 0.f && smoothing < 1.f,
                    "fasttrain::methods::LabelSmoothing: smoothing must be in [0, 1), got ", smoothing);
  }
  static std::string name() { return "LabelSmoothing"; }
  float smoothing() const { return smoothing_; }
  /// Checkpoints hold the configuration (checked when a run resumes); there is no state.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("smoothing", smoothing_);
  }

  template <class Ctx>
  void on_before_loss(Ctx& ctx) {
    using B = typename Ctx::backend;
    saved_ = ctx.targets.soft;
    auto& buf = buffer<B>();
    if (ctx.targets.soft)
      smooth_targets<B>(*ctx.targets.soft, smoothing_, buf);
    else
      smooth_labels<B>(*ctx.targets.labels, ctx.outputs.sample_size(), smoothing_, buf);
    ctx.targets.soft = &buf;
  }

  template <class Ctx>
  void on_after_loss(Ctx& ctx) {
    ctx.targets.soft = static_cast<decltype(ctx.targets.soft)>(saved_);
  }

 private:
  template <class B>
  typename B::matrix& buffer() {
    auto& v = targets_.on<B>();
    if (v.empty()) v.emplace_back();
    return v.front();
  }
  float smoothing_;
  ParamBuffers targets_;  // one matrix: the smoothed targets, on the model's backend
  const void* saved_ = nullptr;
};

}  // namespace fasttrain::methods
