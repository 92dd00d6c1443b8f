// fasttrain/train/context.hpp -- what each event's hook may touch.
//
// A hook receives one of these contexts, never the whole Trainer:
//
//   event                                   context          may touch
//   fit_begin, epoch_begin, epoch_end,      FitContext       model, optimizer; the training
//   fit_end                                                  data through `data` (at epoch_begin
//                                                            it may set the epoch's sample order
//                                                            and batch size)
//   batch_begin, before_forward, batch_end  BatchContext     the batch (inputs, labels, indices:
//                                                            before_forward may change them all,
//                                                            the batch size included), model,
//                                                            `data`; at batch_end also
//                                                            `checkpointer`, and data.repeat_batch()
//   after_forward                           ForwardContext   the outputs (read), model
//   before_loss, after_loss                 LossContext      the targets, the loss value
//   before_backward                         BackwardContext  dL/d(outputs) before it is backpropagated
//   after_backward                          BackwardContext  parameter gradients (through model)
//   before_step, after_step                 StepContext      parameters and final gradients, the
//                                                            optimizer, this step's LR multiplier;
//                                                            at before_step also `recompute`
//   eval_begin, eval_end                    EvalContext      model; eval_end also the accuracy
//
// Every context carries `time` (read-only).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/loss.hpp"

namespace fasttrain {

/// What a method may learn and change about the flow of training data (DataPruning,
/// Curriculum, DataEchoing, BatchSizeWarmup). The Trainer owns it; hooks get a pointer in their context.
class DataControl {
 public:
  enum class Phase { other, epoch_begin, batch_end };

  /// The training set when the data source exposes one (data::Loader does), else nullptr.
  const data::Dataset* dataset() const { return dataset_; }
  /// Samples per batch of the data source as configured (0 when it does not say); an epoch
  /// whose epoch_begin calls set_epoch_batch_size uses that size instead.
  std::int64_t batch_size() const { return batch_size_; }
  /// Whether the source can draw an order given by set_epoch_order (data::Loader can).
  bool can_order() const { return can_order_; }
  /// Whether the source can change its batch size per epoch (data::Loader can).
  bool can_resize() const { return epoch_batch_size_ != nullptr; }
  /// This process trains as rank `rank()` of `ranks()` (set at fit_begin by
  /// dist::DataParallel; 0 of 1 otherwise): methods::Checkpoint gives each rank its directory.
  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  void set_ranks(int rank, int ranks) {
    if (ranks < 1 || rank < 0 || rank >= ranks)
      throw std::logic_error(fasttrain::detail::cat("fasttrain::DataControl::set_ranks: rank ", rank, " of ", ranks));
    rank_ = rank;
    ranks_ = ranks;
  }

  /// At epoch_begin only: this epoch is drawn in batches of `b` samples (the last one smaller
  /// unless the source drops it); its number of batches follows. Epochs whose epoch_begin sets
  /// nothing use the source's own batch size.
  void set_epoch_batch_size(std::int64_t b) {
    if (phase_ != Phase::epoch_begin)
      throw std::logic_error(
          "fasttrain::DataControl::set_epoch_batch_size: only an epoch_begin hook may set the batch size");
    if (!epoch_batch_size_)
      throw config_error(
          "fasttrain::DataControl::set_epoch_batch_size: this recipe changes the batch size per epoch, but the data "
          "source cannot (use data::Loader, or a source with set_batch_size(b), start_epoch(epoch, first) and "
          "batches_in_epoch())");
    if (b < 1)
      throw config_error(
          fasttrain::detail::cat("fasttrain::DataControl::set_epoch_batch_size: the batch size must be >= 1, got ", b));
    *epoch_batch_size_ = b;
  }

  /// At epoch_begin only: this epoch draws exactly these dataset indices, in this order
  /// (batched by the source's batch size), instead of the source's own order. An index may
  /// appear more than once or not at all; the epoch's length follows the order's. Epochs
  /// whose epoch_begin sets nothing use the source's order.
  void set_epoch_order(std::vector<std::int64_t> order) {
    if (phase_ != Phase::epoch_begin)
      throw std::logic_error("fasttrain::DataControl::set_epoch_order: only an epoch_begin hook may set the order");
    if (!can_order_)
      throw config_error(
          "fasttrain::DataControl::set_epoch_order: this recipe sets the order of the samples, but the data "
          "source cannot draw a given order (use data::Loader, or a source with start_epoch(epoch, first, order) "
          "and dataset())");
    if (order.empty()) throw config_error("fasttrain::DataControl::set_epoch_order: the order is empty");
    const auto n = dataset_->size();
    for (std::size_t k = 0; k < order.size(); ++k)
      if (order[k] < 0 || order[k] >= n)
        throw config_error(fasttrain::detail::cat("fasttrain::DataControl::set_epoch_order: entry ", k, " is ",
                                                  order[k], ", not a sample of the training set [0, ", n, ")"));
    *order_ = std::move(order);
  }
  /// At batch_end only: the next step trains on this step's batch again instead of drawing
  /// a new one (it does not advance the epoch). The batch is then as before_forward hooks
  /// left it: a method that repeats batches restores what it needs (see DataEchoing).
  void repeat_batch() {
    if (phase_ != Phase::batch_end)
      throw std::logic_error("fasttrain::DataControl::repeat_batch: only a batch_end hook may repeat the batch");
    *repeat_ = true;
  }

  // Set by the Trainer.
  // `epoch_batch_size` is null when the source cannot change its batch size.
  DataControl(const data::Dataset* ds, std::int64_t batch_size, bool can_order, std::vector<std::int64_t>* order,
              bool* repeat, std::int64_t* epoch_batch_size = nullptr)
      : dataset_(ds),
        batch_size_(batch_size),
        can_order_(can_order && ds),
        order_(order),
        repeat_(repeat),
        epoch_batch_size_(epoch_batch_size) {}
  void set_phase(Phase p) { phase_ = p; }

 private:
  const data::Dataset* dataset_;
  std::int64_t batch_size_;
  bool can_order_;
  std::vector<std::int64_t>* order_;
  bool* repeat_;
  std::int64_t* epoch_batch_size_;
  Phase phase_ = Phase::other;
  int rank_ = 0, ranks_ = 1;
};

template <class Model, class Optimizer>
struct FitContext {
  Model& model;
  Optimizer& optimizer;
  const Time& time;
  DataControl* data = nullptr;
};

/// Writes the Trainer's whole state to a checkpoint file (io/checkpoint.hpp): given to
/// batch_end hooks, where the state is complete (the step is done, Time advanced).
class Checkpointer {
 public:
  using save_fn = void (*)(void* trainer, const std::string& path);
  Checkpointer(save_fn fn, void* trainer) : fn_(fn), trainer_(trainer) {}
  void save(const std::string& path) const { fn_(trainer_, path); }

 private:
  save_fn fn_;
  void* trainer_;
};

template <class Model>
struct BatchContext {
  using backend = typename Model::backend;
  data::Batch<backend>& batch;
  Model& model;
  const Time& time;
  const Checkpointer* checkpointer = nullptr;  ///< set at batch_end only
  DataControl* data = nullptr;
};

template <class Model>
struct ForwardContext {
  using backend = typename Model::backend;
  const data::Batch<backend>& batch;
  const typename backend::tensor& outputs;
  Model& model;
  const Time& time;
};

template <class Model>
struct LossContext {
  using backend = typename Model::backend;
  const data::Batch<backend>& batch;
  const typename backend::tensor& outputs;
  nn::Targets<backend>& targets;  ///< labels, or dense targets (soft) set by a method
  float& loss;                    ///< NaN at before_loss; the computed loss at after_loss
  const Time& time;
};

template <class Model>
struct BackwardContext {
  using backend = typename Model::backend;
  const data::Batch<backend>& batch;
  typename backend::tensor& grad_outputs;  ///< dL/d(outputs)
  float loss;
  Model& model;
  const Time& time;
};

/// Given to before_step hooks: evaluates this step's loss and gradients again, at the
/// model's current weights (SAM evaluates them at perturbed weights). It runs the forward
/// pass (training mode), the loss and the backward pass on the step's batch and targets as
/// the methods left them; the hooks between batch_begin and after_backward do not run again.
/// Every parameter gradient is overwritten; returns the loss.
class GradientRecompute {
 public:
  using fn = float (*)(void* trainer);
  GradientRecompute(fn f, void* trainer) : fn_(f), trainer_(trainer) {}
  float operator()() const { return fn_(trainer_); }

 private:
  fn fn_;
  void* trainer_;
};

template <class Model, class Optimizer>
struct StepContext {
  Model& model;
  Optimizer& optimizer;
  float& lr_multiplier;  ///< the schedule's value for this step; methods may scale it
  const Time& time;
  const GradientRecompute* recompute = nullptr;  ///< set at before_step only
  /// Set by a before_step hook to skip this step's update (MixedPrecision, when its scaled
  /// gradients overflowed): no gradient check, no optimizer step; after_step still runs.
  bool skip_step = false;
};

template <class Model>
struct EvalContext {
  Model& model;
  const Time& time;
  double accuracy = std::nan("");  ///< set at eval_end
  /// Set at eval_begin by a method that splits the evaluation over processes
  /// (dist::DataParallel): this process evaluates part `shard` of `num_shards` of the test set
  /// (data::shard_range), and eval_end hooks may combine the parts' counts into `accuracy`.
  int shard = 0;
  int num_shards = 1;
  std::int64_t correct = 0;  ///< set at eval_end: this process's correct predictions
  std::int64_t samples = 0;  ///< and the samples it evaluated
};

}  // namespace fasttrain
