// fasttrain/methods/data/data_echoing.hpp -- DataEchoing (data / retrofit).
//
// Trains on each batch the data source delivers `factor` times in a row (Choi et al. 2019,
// "Faster Neural Network Training with Data Echoing", arXiv:1907.05550): when reading and
// preparing data is slower than a training step, the accelerator otherwise waits, and
// repeating a batch fills that wait with useful steps. It helps only when the input
// pipeline is the bottleneck; with data in memory and a prefetching loader it just adds
// steps (see the card).
//
//   Trainer t{model, opt, loss, methods::DataEchoing{{.factor = 2}}};
//
// This is batch echoing placed before augmentation: each repeat starts from the batch as
// the source delivered it, so methods that change inputs (RandAugment, CutOut, MixUp, ...)
// and SelectiveBackprop draw afresh on every repeat. Repeats are optimizer steps (Time.batch)
// but do not advance the epoch or the sample count: an epoch is still one pass over the
// data, so a schedule in epochs keeps its shape and an epoch takes `factor` times the steps.
//
// Hooks: batch_begin (keeps a copy of a new batch, or restores it for a repeat: batch_begin
// runs before every before_forward hook), batch_end (asks the Trainer for a repeat through
// ctx.data->repeat_batch()).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct DataEchoingOptions {
  int factor = 2;  ///< steps per batch drawn (1: no echoing)
};

class DataEchoing {
 public:
  static constexpr taxonomy tag{component::data, action::retrofit};
  using events = fasttrain::events<event::batch_begin, event::batch_end>;

  explicit DataEchoing(DataEchoingOptions o = {}) : opt_(o) {
    fasttrain::detail::require(opt_.factor >= 1, "fasttrain::methods::DataEchoing: factor must be >= 1, got ",
                               opt_.factor);
  }
  static std::string name() { return "DataEchoing"; }
  const DataEchoingOptions& options() const { return opt_; }
  /// Steps already taken on the current batch (0 while on a new one).
  int repeats() const { return echo_; }

  void reset() { echo_ = 0; }

  template <class Ctx>
  void on_batch_begin(Ctx& ctx) {
    using B = typename Ctx::backend;
    auto& b = ctx.batch;
    if (echo_ == 0) {  // kept as a host batch (what a checkpoint stores)
      saved_.inputs.shape = b.inputs.shape;
      saved_.inputs.data.resize(b.inputs.data.rows(), b.inputs.data.cols());
      B::to_host(b.inputs.data, saved_.inputs.data.data());
      saved_.labels = b.labels;
      saved_.indices = b.indices;
    } else {
      b.inputs.shape = saved_.inputs.shape;
      B::from_host(saved_.inputs.data.data(), saved_.inputs.data.rows(), saved_.inputs.data.cols(), b.inputs.data);
      b.labels = saved_.labels;
      b.indices = saved_.indices;
    }
  }
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    if (++echo_ < opt_.factor) {
      if (!ctx.data)
        throw std::logic_error("fasttrain::methods::DataEchoing: batch_end without the Trainer's DataControl");
      ctx.data->repeat_batch();
    } else {
      echo_ = 0;
    }
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("factor", opt_.factor);
    ar("echo", echo_);
    // The batch being repeated: needed to resume between two of its steps.
    std::vector<std::int64_t> dims(saved_.inputs.shape.dims.begin(),
                                   saved_.inputs.shape.dims.begin() + saved_.inputs.shape.rank);
    ar("batch.shape", dims);
    ar("batch.inputs", saved_.inputs.data);
    ar("batch.labels", saved_.labels);
    ar("batch.indices", saved_.indices);
    if constexpr (!Archive::saving) {
      if (echo_ < 0 || echo_ >= opt_.factor)
        ar.invalid(fasttrain::detail::cat("DataEchoing's repeat count ", echo_, " is outside [0, ", opt_.factor, ")"));
      if (dims.empty() || dims.size() > 3) ar.invalid("DataEchoing's batch has a sample shape of rank 0 or > 3");
      Shape s;
      s.rank = static_cast<int>(dims.size());
      for (std::size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] < 1) ar.invalid("DataEchoing's batch has a sample dimension < 1");
        s.dims[i] = dims[i];
      }
      saved_.inputs.shape = s;
      const auto n = static_cast<std::size_t>(saved_.inputs.data.cols());
      if (echo_ > 0 && (saved_.inputs.data.rows() != s.size() || saved_.labels.size() != n ||
                        saved_.indices.size() != n))
        ar.invalid("DataEchoing's saved batch is inconsistent (shape, inputs, labels and indices disagree)");
    }
  }

 private:
  DataEchoingOptions opt_;
  int echo_ = 0;
  data::Batch<> saved_;
};

}  // namespace fasttrain::methods
