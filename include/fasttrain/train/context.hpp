// fasttrain/train/context.hpp -- what each event's hook may touch.
//
// A hook receives one of these contexts, never the whole Trainer:
//
//   event                                   context          may touch
//   fit_begin, epoch_begin, epoch_end,      FitContext       model, optimizer
//   fit_end
//   batch_begin, before_forward, batch_end  BatchContext     the batch (inputs, labels), model;
//                                                            at batch_end also `checkpointer`
//   after_forward                           ForwardContext   the outputs (read), model
//   before_loss, after_loss                 LossContext      the targets, the loss value
//   before_backward                         BackwardContext  dL/d(outputs) before it is backpropagated
//   after_backward                          BackwardContext  parameter gradients (through model)
//   before_step, after_step                 StepContext      parameters and final gradients, the
//                                                            optimizer, this step's LR multiplier
//   eval_begin, eval_end                    EvalContext      model; eval_end also the accuracy
//
// Every context carries `time` (read-only).
#pragma once

#include <cmath>
#include <string>

#include "fasttrain/core/time.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/loss.hpp"

namespace fasttrain {

template <class Model, class Optimizer>
struct FitContext {
  Model& model;
  Optimizer& optimizer;
  const Time& time;
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

template <class Model, class Optimizer>
struct StepContext {
  Model& model;
  Optimizer& optimizer;
  float& lr_multiplier;  ///< the schedule's value for this step; methods may scale it
  const Time& time;
};

template <class Model>
struct EvalContext {
  Model& model;
  const Time& time;
  double accuracy = std::nan("");  ///< set at eval_end
};

}  // namespace fasttrain
