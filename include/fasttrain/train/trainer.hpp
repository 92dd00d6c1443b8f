// fasttrain/train/trainer.hpp -- the statically typed training loop.
//
//   nn::Sequential<...> model;  model.reset_parameters(seed);
//   Trainer trainer{model, optim::SGD{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true}},
//                   nn::SoftmaxCrossEntropy{}, methods::LabelSmoothing{0.1f}};
//   Result r = trainer.fit(loader, test_set, {.max_duration = 10_ep, .target_accuracy = 0.88},
//                          schedule::cosine());
//   std::cout << r.json() << "\n";
//
// Methods are composed at compile time: each event is a fold over the methods that
// declare it (`after_*` events in reverse order), with no virtual call and no
// std::function. A method that is not in the list does not exist in the binary.
// Checked at compile time: every method is tagged and declares its events; every
// declared hook is callable with its event's context, and every defined on_* hook is
// declared; no two methods conflict; runs_before / runs_after can be satisfied (the
// methods are sorted by them); the model was rewritten by every surgery method of the
// recipe (methods/model/surgery.hpp).
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/io/archive.hpp"
#include "fasttrain/io/checkpoint.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/nn/loss.hpp"
#include "fasttrain/optim/schedule.hpp"
#include "fasttrain/train/compose.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/evaluate.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"
#include "fasttrain/train/phases.hpp"
#include "fasttrain/train/progress.hpp"
#include "fasttrain/train/result.hpp"

namespace fasttrain {

/// What fit() does when the loss or a gradient stops being finite.
enum class Divergence {
  stop,      ///< throw divergence_error naming the step, the last finite loss and the bad tensor
  rollback,  ///< reload the last checkpoint written in this run and go on with a lower learning rate
};

struct FitOptions {
  Duration max_duration{10.0, Unit::epoch};  ///< the budget: epochs, batches, samples or seconds
  std::optional<double> target_accuracy{};   ///< stop at the first evaluation reaching it
  /// Evaluate also every this much training (ep, ba or sp; 0: only at the end of each epoch),
  /// for a finer accuracy-against-time curve and an earlier stop at the target. Evaluation
  /// time is never training time.
  Duration eval_interval{0.0, Unit::epoch};
  std::string name = "fasttrain";            ///< the `name` field of the result's JSON line
  ProgressMode progress = ProgressMode::automatic;
  std::int64_t eval_chunk = 256;   ///< samples per forward pass during evaluation (bounds its memory)
  /// Check every step's loss and, before the optimizer step, every gradient for NaN / inf.
  bool check_finite = true;
  Divergence on_divergence = Divergence::stop;
  float rollback_lr_factor = 0.5f;  ///< Divergence::rollback: the learning rate's factor per rollback
  int max_rollbacks = 3;            ///< Divergence::rollback: give up (throw) after this many
  /// A checkpoint file to resume from (empty: a fresh run). The model, optimizer, methods,
  /// Time, loader position and history continue from it; the run must be configured as the
  /// one that wrote it (checked). See io::latest_checkpoint().
  std::string resume_from{};
};

namespace detail {
/// A method that declares `static constexpr bool eigen_only = true` (its state or its batch
/// edits are Eigen code): the Trainer refuses it on other backends.
template <class M>
constexpr bool eigen_only = [] {
  if constexpr (requires { M::eigen_only; }) return static_cast<bool>(M::eigen_only);
  else return false;
}();
template <class E, class List>
struct declares : std::false_type {};
template <class E, class... Es>
struct declares<E, events<Es...>> : std::bool_constant<(std::is_same_v<E, Es> || ...)> {};

template <class E>
struct is_event : declares<E, all_events> {};
template <class List>
struct all_are_events : std::false_type {};
template <class... Es>
struct all_are_events<events<Es...>> : std::bool_constant<(is_event<Es>::value && ...)> {};

/// Checks one (method, event) pair; the compiler shows Method and Event on failure.
template <class Method, class Event, bool Declared, bool Callable, bool Named>
struct hook_check {
  static_assert(!Declared || Callable,
                "fasttrain::Trainer: the method declares this event in `using events = ...` but has no "
                "on_<event>(Context&) member callable with the event's context (see hook_check<Method, Event, "
                "...> above for which; train/context.hpp lists each event's context)");
  static_assert(Declared || !(Callable || Named),
                "fasttrain::Trainer: the method defines an on_<event> hook that is not listed in its "
                "`using events = ...`; declare the event or remove the hook (see hook_check<Method, Event, ...>)");
  static constexpr bool ok = true;
};
template <class Method, bool Valid>
struct events_check {
  static_assert(Valid,
                "fasttrain::Trainer: the method's `using events = fasttrain::events<...>` must list only "
                "fasttrain::event:: types (see events_check<Method, false> above)");
  static constexpr bool ok = true;
};
template <class M>
concept TrainableModel = requires(M& m, const typename M::backend::tensor& t) {
  { m.forward(t, nn::Mode::train) } -> std::same_as<const typename M::backend::tensor&>;
  m.backward(t);
  m.parameter_names();
  m.output_shape(Shape{});
};
template <class O, class M>
concept OptimizerFor = requires(O& o, M& m) { o.step(m, 1.f); };
template <class L, class B>
concept LossFor = requires(L& l, const typename B::tensor& t, const nn::Targets<B>& tg, typename B::tensor& g) {
  { l.forward(t, tg) } -> std::convertible_to<float>;
  l.backward(g);
};
template <class Model, bool Ok>
struct model_check {
  static_assert(Ok,
                "fasttrain::Trainer: the first argument must be a network: a type with `backend`, "
                "forward(x, mode), backward(dy), parameter_names() and output_shape(shape), such as "
                "nn::Sequential<...> (a single layer is not: wrap it in nn::Sequential)");
  static constexpr bool ok = true;
};
template <class Optimizer, bool Ok>
struct optimizer_check {
  static_assert(Ok,
                "fasttrain::Trainer: the second argument must be an optimizer for the model, with "
                "step(model, multiplier) (optim::SGD, optim::AdamW)");
  static constexpr bool ok = true;
};
template <class Loss, bool Ok>
struct loss_check {
  static_assert(Ok,
                "fasttrain::Trainer: the third argument must be a loss on the model's backend, with "
                "forward(outputs, targets) -> float and backward(grad) (nn::SoftmaxCrossEntropy, nn::MSE)");
  static constexpr bool ok = true;
};
template <class... Ms>
struct unique_types : std::true_type {};
template <class M, class... Ms>
struct unique_types<M, Ms...>
    : std::bool_constant<!(std::is_same_v<M, Ms> || ...) && unique_types<Ms...>::value> {};

/// A surgery method (static constexpr bool surgery = true) changes the network's type: the
/// model must be methods::model_for<Net, ...> with that method among its rules.
template <class Model, class M>
constexpr bool surgery_applied() {
  if constexpr (requires { M::surgery; }) {
    if constexpr (M::surgery) {
      if constexpr (requires { typename Model::surgery_applied; })
        return in_list<M, typename Model::surgery_applied>::value;
      else
        return false;
    } else {
      return true;
    }
  } else {
    return true;
  }
}
template <class Model, class Method, bool Applied>
struct surgery_check {
  static_assert(Applied,
                "fasttrain::Trainer: the recipe has a surgery method (it changes the network's type) that was not "
                "applied to the model; declare the model as methods::model_for<Net, Methods...> with the same "
                "methods (see surgery_check<Model, Method, false> above)");
  static constexpr bool ok = true;
};

template <class Method, bool IsMethod>
struct method_check {
  static_assert(IsMethod,
                "fasttrain::Trainer: a method needs `static constexpr fasttrain::taxonomy tag{...}` and "
                "`using events = fasttrain::events<...>` (see method_check<Method, false> above)");
  static constexpr bool ok = true;
};
}  // namespace detail

template <class Model, class Optimizer, class Loss, class... Methods>
class Trainer {
  static_assert(detail::model_check<Model, detail::TrainableModel<Model>>::ok);
  static_assert(detail::optimizer_check<Optimizer, detail::OptimizerFor<Optimizer, Model>>::ok);
  static_assert(detail::loss_check<Loss, detail::LossFor<Loss, typename Model::backend>>::ok);
  static_assert((detail::method_check<Methods, Method<Methods>>::ok && ...));
  static_assert((detail::surgery_check<Model, Methods, detail::surgery_applied<Model, Methods>()>::ok && ...));
  static_assert(detail::unique_types<Methods...>::value,
                "fasttrain::Trainer: a method type appears twice in the recipe; each may appear at most once");
  using composition = detail::composition<Methods...>;
  static_assert(composition::no_conflicts);
  static constexpr std::size_t num_methods = sizeof...(Methods);
  static_assert(std::is_same_v<typename Model::backend, cpu::eigen> || !(detail::eigen_only<Methods> || ... || false),
                "fasttrain::Trainer: a method in the recipe runs only on cpu::eigen so far (it declares eigen_only), "
                "and the model is on another backend; docs/backends.md lists the methods per backend");
  static_assert((static_cast<int>(PhaseTimer<Methods>) + ... + 0) <= 1,
                "fasttrain::Trainer: the recipe has more than one phase timer (profile::Profiler); keep one");

 public:
  using model_type = Model;
  using optimizer_type = Optimizer;
  using loss_type = Loss;
  using backend = typename Model::backend;
  using tensor = typename backend::tensor;
  using batch_type = data::Batch<backend>;
  using methods_tuple = typename composition::sorted_tuple;  ///< methods in execution order
  /// Whether the recipe holds a phase timer (profile::Profiler): only then are phases timed.
  static constexpr bool profiled = (PhaseTimer<Methods> || ... || false);

  using fit_context = FitContext<Model, Optimizer>;
  using batch_context = BatchContext<Model>;
  using forward_context = ForwardContext<Model>;
  using loss_context = LossContext<Model>;
  using backward_context = BackwardContext<Model>;
  using step_context = StepContext<Model, Optimizer>;
  using eval_context = EvalContext<Model>;

  /// The context type a hook for event E receives.
  template <class E>
  static auto context_type_of() {
    using namespace event;
    if constexpr (std::is_same_v<E, fit_begin> || std::is_same_v<E, epoch_begin> ||
                  std::is_same_v<E, epoch_end> || std::is_same_v<E, fit_end>)
      return std::type_identity<fit_context>{};
    else if constexpr (std::is_same_v<E, batch_begin> || std::is_same_v<E, before_forward> ||
                       std::is_same_v<E, batch_end>)
      return std::type_identity<batch_context>{};
    else if constexpr (std::is_same_v<E, after_forward>)
      return std::type_identity<forward_context>{};
    else if constexpr (std::is_same_v<E, before_loss> || std::is_same_v<E, after_loss>)
      return std::type_identity<loss_context>{};
    else if constexpr (std::is_same_v<E, before_backward> || std::is_same_v<E, after_backward>)
      return std::type_identity<backward_context>{};
    else if constexpr (std::is_same_v<E, before_step> || std::is_same_v<E, after_step>)
      return std::type_identity<step_context>{};
    else
      return std::type_identity<eval_context>{};
  }
  template <class E>
  using context_t = typename decltype(context_type_of<E>())::type;

 private:
  template <class M, class E>
  static constexpr bool check_hook() {
    using Ctx = context_t<E>;
    return detail::hook_check<M, E, detail::declares<E, typename M::events>::value,
                              E::template callable<M, Ctx>, E::template named<M>>::ok;
  }
  template <class M, class... Es>
  static constexpr bool check_method(events<Es...>) {
    return detail::events_check<M, detail::all_are_events<typename M::events>::value>::ok &&
           (check_hook<M, Es>() && ...);
  }
  static_assert((check_method<Methods>(all_events{}) && ... && true));

 public:
  Trainer(Model& model, Optimizer optimizer, Loss loss, Methods... methods)
      : Trainer(model, std::move(optimizer), std::move(loss), std::forward_as_tuple(std::move(methods)...),
                std::make_index_sequence<num_methods>{}) {}

  Model& model() { return model_; }
  Optimizer& optimizer() { return optimizer_; }
  Loss& loss() { return loss_; }
  /// The method of type M.
  template <class M>
  M& method() { return std::get<M>(methods_); }
  /// Methods in the order they run (after sorting by their ordering traits).
  methods_tuple& methods() { return methods_; }
  const Time& time() const { return time_; }

  /// Trains on `train` until the budget or the target accuracy on `test` is reached.
  /// Evaluates on `test` after every epoch (and at the end of a partial one), and every
  /// `opt.eval_interval` within epochs when it is set.
  /// Each call is a new run from the model's current weights: Time, the optimizer's state
  /// (momentum, moments) and the state of methods that have reset() start afresh -- unless
  /// `opt.resume_from` names a checkpoint, whose state then replaces all of it.
  template <class Source, schedule::Schedule Sched = schedule::constant>
  Result fit(Source& train, const data::Dataset* test, const FitOptions& opt = {}, Sched sched = {}) {
    validate(opt, test);
    if constexpr (requires { train.dataset(); }) check_dataset("training set", train.dataset());
    if (test) check_dataset("test set", *test);
    if constexpr (requires { optimizer_.reset(); }) optimizer_.reset();
    std::apply([](auto&... m) { (reset_method(m), ...); }, methods_);
    result_ = Result{};
    result_.name = opt.name;
    result_.target_accuracy = opt.target_accuracy;
    time_ = Time{};
    time_.batches_per_epoch = train.batches_per_epoch();
    time_.samples_per_epoch = train.samples_per_epoch();
    time_.max_duration = opt.max_duration;
    epoch_loss_sum_ = 0.0;
    epoch_loss_count_ = 0;
    lr_scale_ = 1.f;
    last_finite_loss_ = std::nan("");
    last_checkpoint_.clear();
    source_config_ = describe_source(train);
    epoch_order_.clear();
    epoch_batch_size_ = 0;
    repeat_batch_ = false;
    data_.emplace(source_dataset(train), source_batch_size(train), can_order<Source>(), &epoch_order_,
                  &repeat_batch_, can_resize<Source>() ? &epoch_batch_size_ : nullptr);
    Progress progress(opt.progress);
    const double epochs_total = opt.max_duration.unit == Unit::epoch ? opt.max_duration.value : 0.0;

    if constexpr (profiled) timer().begin_timing(method_names());
    fit_context fctx{model_, optimizer_, time_, &*data_};
    emit<event::fit_begin>(fctx);
    // Resuming continues inside the epoch the checkpoint was written in: epoch_begin has
    // already run for it, and what it set is part of the restored state.
    bool mid_epoch = false;
    if (!opt.resume_from.empty()) {
      load_checkpoint(opt.resume_from);
      result_.resumed_from = opt.resume_from;
      last_checkpoint_ = opt.resume_from;
      mid_epoch = true;
    }
    const Checkpointer checkpointer(&Trainer::save_checkpoint_thunk, this);

    using clock = std::chrono::steady_clock;
    float loss_value = 0.f;
    bool done = false;
    // The next point (in eval_interval's unit) at which to evaluate mid-epoch.
    // A checkpoint written where an evaluation is due (at batch_end, before it) holds that
    // point: a resumed run evaluates there too, as the uninterrupted one did.
    const double eval_every = opt.eval_interval.value;
    if (opt.resume_from.empty() || eval_interval_.value != eval_every || eval_interval_.unit != opt.eval_interval.unit)
      next_eval_ = eval_every > 0 ? (std::floor(time_.in(opt.eval_interval.unit) / eval_every + 1e-9) + 1) * eval_every : 0;
    eval_interval_ = opt.eval_interval;
    auto evaluate_into_history = [&](EvalRecord rec) {
      rec.epochs = time_.in(Unit::epoch);
      const auto e0 = clock::now();
      rec.test_accuracy = evaluate(*test, opt.eval_chunk);
      const double eval_seconds = std::chrono::duration<double>(clock::now() - e0).count();
      result_.eval_seconds += eval_seconds;
      if constexpr (profiled) timer().add_phase(Phase::eval, eval_seconds);
      result_.history.push_back(rec);
      if (opt.target_accuracy && rec.test_accuracy >= *opt.target_accuracy && !result_.time_to_target_seconds) {
        result_.time_to_target_seconds = time_.seconds;
        result_.stop_reason = "target";
        return true;
      }
      return false;
    };
    // A mid-epoch evaluation, when one is due: after a step, and on resuming (or rolling back)
    // from a checkpoint, written at batch_end before it. True when it reached the target.
    auto mid_epoch_eval = [&](double& eval_in_epoch) {
      if (eval_every <= 0 || !test || time_.in(opt.eval_interval.unit) + 1e-9 < next_eval_) return false;
      next_eval_ = (std::floor(time_.in(opt.eval_interval.unit) / eval_every + 1e-9) + 1) * eval_every;
      // at the epoch's last batch the end-of-epoch evaluation follows; do not evaluate twice
      if (time_.batch_in_epoch >= time_.batches_per_epoch || time_.reached(opt.max_duration)) return false;
      const auto e0 = clock::now();
      const bool reached = evaluate_into_history(
          {time_.epoch, time_.batch, time_.seconds,
           epoch_loss_count_ ? epoch_loss_sum_ / static_cast<double>(epoch_loss_count_) : std::nan(""), std::nan("")});
      eval_in_epoch += std::chrono::duration<double>(clock::now() - e0).count();
      return reached;
    };
    while (!done) {
      // Training seconds count everything but evaluation: epoch_begin hooks (a method's
      // scoring pass) and the source's epoch start included.
      const auto t0 = clock::now();
      const double seconds_at_start = time_.seconds;
      double eval_in_epoch = 0;  // mid-epoch evaluations' seconds: not training time
      if (!mid_epoch) {
        epoch_order_.clear();
        epoch_batch_size_ = 0;
        data_->set_phase(DataControl::Phase::epoch_begin);
        emit<event::epoch_begin>(fctx);
        data_->set_phase(DataControl::Phase::other);
        epoch_loss_sum_ = 0.0;
        epoch_loss_count_ = 0;
      }
      const bool resumed = std::exchange(mid_epoch, false);
      start_source(train, time_.epoch, time_.batch_in_epoch);
      if (resumed && mid_epoch_eval(eval_in_epoch)) break;  // the target was reached
      bool rolled_back = false;
      // A batch_end hook may ask for the same batch again (repeat_batch_): then no new one is
      // drawn. Repeats advance neither epochs nor samples, so with a budget in those units the
      // last batch's repeats still run.
      const bool repeats_are_free = opt.max_duration.unit == Unit::epoch || opt.max_duration.unit == Unit::sample;
      while ((!time_.reached(opt.max_duration) || (repeat_batch_ && repeats_are_free)) &&
             (repeat_batch_ || timed<Phase::data>([&] { return next_batch(train, batch_); }))) {
        const bool fresh = !repeat_batch_;
        repeat_batch_ = false;
        try {
          loss_value = train_step(batch_, sched, opt.check_finite, fresh);
        } catch (const divergence_error& e) {
          if (opt.on_divergence != Divergence::rollback) throw;
          roll_back(e, opt);
          rolled_back = true;
          break;
        }
        epoch_loss_sum_ += loss_value;
        ++epoch_loss_count_;
        time_.seconds = seconds_at_start + std::chrono::duration<double>(clock::now() - t0).count() - eval_in_epoch;
        batch_context bctx{batch_, model_, time_, &checkpointer, &*data_};
        data_->set_phase(DataControl::Phase::batch_end);
        emit<event::batch_end>(bctx);
        data_->set_phase(DataControl::Phase::other);
        progress.update(time_.epoch, epochs_total, time_.batch, loss_value,
                        result_.history.empty() ? std::nan("") : result_.history.back().test_accuracy,
                        time_.seconds > 0 ? static_cast<double>(time_.sample) / time_.seconds : 0.0,
                        time_.fraction(), time_.seconds);
        if (mid_epoch_eval(eval_in_epoch)) {
          done = true;
          break;
        }
      }
      if (done) break;  // the target was reached mid-epoch
      if (rolled_back) {
        mid_epoch = true;
        continue;
      }
      const bool empty_epoch = epoch_loss_count_ == 0;
      if (time_.batch_in_epoch == time_.batches_per_epoch) {
        ++time_.epoch;
        time_.batch_in_epoch = 0;
      }
      emit<event::epoch_end>(fctx);
      time_.seconds = seconds_at_start + std::chrono::duration<double>(clock::now() - t0).count() - eval_in_epoch;

      EvalRecord rec{time_.epoch, time_.batch, time_.seconds,
                     epoch_loss_count_ ? epoch_loss_sum_ / static_cast<double>(epoch_loss_count_) : std::nan(""),
                     std::nan("")};
      if (test) {
        if (evaluate_into_history(rec)) done = true;
      } else {
        rec.epochs = time_.in(Unit::epoch);
        result_.history.push_back(rec);
      }
      if (time_.reached(opt.max_duration)) done = true;
      if (empty_epoch) done = true;  // an empty epoch would loop forever
    }
    progress.update(time_.epoch > 0 ? time_.epoch - 1 : 0, epochs_total, time_.batch, loss_value,
                    result_.history.back().test_accuracy, time_.seconds > 0 ? time_.sample / time_.seconds : 0.0,
                    time_.fraction(), time_.seconds, true);
    progress.finish();
    emit<event::fit_end>(fctx);

    Result result = std::move(result_);
    result_ = Result{};
    if (result.stop_reason.empty()) result.stop_reason = "budget";
    result.test_accuracy = result.history.back().test_accuracy;
    result.final_train_loss = result.history.back().train_loss;
    result.epochs = time_.epoch;
    result.steps = time_.batch;
    result.samples = time_.sample;
    result.train_seconds = time_.seconds;
    result.samples_per_second = time_.seconds > 0 ? static_cast<double>(time_.sample) / time_.seconds : 0.0;
    return result;
  }
  template <class Source, schedule::Schedule Sched = schedule::constant>
  Result fit(Source& train, const data::Dataset& test, const FitOptions& opt = {}, Sched sched = {}) {
    return fit(train, &test, opt, std::move(sched));
  }

  /// Writes the whole training state to `path` atomically (io/checkpoint.hpp): the model
  /// (parameters, BatchNorm statistics, layer RNGs), the optimizer, every method's
  /// configuration and state, Time, the loader's position and the run's history so far.
  /// Meant for batch_end (methods::Checkpoint calls it through ctx.checkpointer) and for
  /// after fit(); a checkpoint resumes a fit() exactly where it was written.
  void save_checkpoint(const std::string& path) {
    io::CheckpointWriter out(path, 5);  // streamed: the file is never held whole in memory
    out.section("meta", [&](auto& ar) { meta_state(ar); });
    out.section("model", [&](auto& ar) { model_.state(ar); });
    out.section("optimizer", [&](auto& ar) { io::visit_state(ar, optimizer_); });
    out.section("methods", [&](auto& ar) { methods_state(ar); });
    out.section("trainer", [&](auto& ar) { trainer_state(ar); });
    out.commit();
    last_checkpoint_ = path;
  }

  /// Accuracy on `ds`, firing eval_begin / eval_end around it. A method may give this
  /// process a shard of `ds` at eval_begin and combine the shards' counts at eval_end
  /// (dist::DataParallel: a collective, to call on every rank).
  double evaluate(const data::Dataset& ds, std::int64_t chunk = 256) {
    eval_context ectx{model_, time_};
    emit<event::eval_begin>(ectx);
    const auto [begin, end] = shard_range(ds.size(), ectx.shard, ectx.num_shards);
    ectx.samples = end - begin;
    ectx.correct = count_correct(model_, ds, chunk, begin, end);
    ectx.accuracy = ectx.samples ? static_cast<double>(ectx.correct) / static_cast<double>(ectx.samples) : 0.0;
    emit<event::eval_end>(ectx);
    return ectx.accuracy;
  }

 private:
  template <class Tuple, std::size_t... I>
  Trainer(Model& model, Optimizer&& optimizer, Loss&& loss, Tuple&& ms, std::index_sequence<I...>)
      : model_(model),
        optimizer_(std::move(optimizer)),
        loss_(std::move(loss)),
        methods_(std::move(std::get<composition::sorted.order[I]>(ms))...) {}

  static void save_checkpoint_thunk(void* self, const std::string& path) {
    static_cast<Trainer*>(self)->save_checkpoint(path);
  }

  // Restores what save_checkpoint wrote; every section must be read to its end.
  void load_checkpoint(const std::string& path) {
    const io::CheckpointData ck = io::read_checkpoint(path);
    auto read = [&](const char* name, auto&& f) {
      const std::string* bytes = ck.find(name);
      if (!bytes) throw data_error(path, std::string("has no '") + name + "' section: not a Trainer checkpoint");
      io::StateReader r(*bytes, path, name);
      f(r);
      r.finish();
    };
    read("meta", [&](auto& ar) { meta_state(ar); });
    read("model", [&](auto& ar) { model_.state(ar); });
    read("optimizer", [&](auto& ar) { io::visit_state(ar, optimizer_); });
    read("methods", [&](auto& ar) { methods_state(ar); });
    read("trainer", [&](auto& ar) { trainer_state(ar); });
  }

  template <class Ar>
  void meta_state(Ar& ar) {
    ar.config("model", Model::name());
    if constexpr (requires { Optimizer::name(); }) ar.config("optimizer", Optimizer::name());
    ar.config("backend", std::string(backend::name));
    ar.config("methods", static_cast<std::int64_t>(num_methods));
  }
  template <class Ar>
  void methods_state(Ar& ar) {
    std::size_t i = 0;
    std::apply(
        [&](auto&... m) {
          ((void)[&] {
            std::string label = std::to_string(i++);
            if constexpr (requires { m.name(); }) label += "." + std::string(m.name());
            auto scope = ar.scope(label);
            io::visit_state(ar, m);
          }(), ...);
        },
        methods_);
  }
  template <class Ar>
  void trainer_state(Ar& ar) {
    ar.config("data", source_config_);
    ar("batches_per_epoch", time_.batches_per_epoch);  // of this epoch (a method may set its order)
    ar("samples_per_epoch", time_.samples_per_epoch);
    ar("epoch_order", epoch_order_);
    ar("epoch_batch_size", epoch_batch_size_);
    ar("repeat_batch", repeat_batch_);
    ar("epoch", time_.epoch);
    ar("batch", time_.batch);
    ar("batch_in_epoch", time_.batch_in_epoch);
    ar("sample", time_.sample);
    ar("seconds", time_.seconds);
    ar("epoch_loss_sum", epoch_loss_sum_);
    ar("epoch_loss_count", epoch_loss_count_);
    ar("last_finite_loss", last_finite_loss_);
    ar("lr_scale", lr_scale_);
    ar("rollbacks", result_.rollbacks);
    ar("eval_seconds", result_.eval_seconds);
    ar("eval_interval", eval_interval_.value);
    ar("eval_interval_unit", eval_interval_.unit);
    ar("next_eval", next_eval_);
    archive_history(ar, result_.history);
    if constexpr (!Ar::saving) {
      if (time_.batches_per_epoch < 1 || time_.samples_per_epoch < 1 || time_.batch_in_epoch < 0 ||
          time_.batch_in_epoch > time_.batches_per_epoch || time_.epoch < 0 ||
          time_.batch < 0 || time_.sample < 0 || epoch_loss_count_ < 0 || result_.rollbacks < 0)
        ar.invalid(fasttrain::detail::cat("an impossible position (epoch ", time_.epoch, ", batch ", time_.batch_in_epoch,
                                          " of ", time_.batches_per_epoch, ", step ", time_.batch, ", sample ", time_.sample,
                                          ")"));
      if (!(lr_scale_ > 0.f && lr_scale_ <= 1.f) || !std::isfinite(time_.seconds) || time_.seconds < 0 ||
          !std::isfinite(epoch_loss_sum_) || !std::isfinite(next_eval_))
        ar.invalid(fasttrain::detail::cat("impossible values (learning-rate scale ", lr_scale_, ", seconds ", time_.seconds,
                                          ", epoch loss sum ", epoch_loss_sum_, ")"));
    }
  }

  // What a checkpoint must agree on about the training data: the loader's configuration
  // when the source exposes it (a resumed run must see the same batches).
  template <class Source>
  static std::string describe_source(const Source& src) {
    std::string d = fasttrain::detail::cat("batches_per_epoch=", src.batches_per_epoch());
    if constexpr (requires { src.options().seed; src.dataset().size(); })
      d += fasttrain::detail::cat(" seed=", src.options().seed, " batch_size=", src.options().batch_size,
                                  " shuffle=", src.options().shuffle, " drop_last=", src.options().drop_last,
                                  " size=", src.dataset().size());
    if constexpr (requires { src.options().num_shards; })
      if (src.options().num_shards > 1)
        d += fasttrain::detail::cat(" shard=", src.options().shard, "/", src.options().num_shards);
    return d;
  }
  template <class Source>
  static const data::Dataset* source_dataset(const Source& src) {
    if constexpr (requires { { src.dataset() } -> std::convertible_to<const data::Dataset&>; }) return &src.dataset();
    else return nullptr;
  }
  template <class Source>
  static std::int64_t source_batch_size(const Source& src) {
    if constexpr (requires { src.options().batch_size; }) return src.options().batch_size;
    else return 0;
  }
  template <class Source>
  static constexpr bool can_resize() {
    return requires(Source& s) {
      s.set_batch_size(std::int64_t{});
      s.start_epoch(std::int64_t{}, std::int64_t{});
      s.batches_in_epoch();
      s.samples_in_epoch();
    };
  }
  template <class Source>
  static constexpr bool can_order() {
    return requires(Source& s, std::vector<std::int64_t> o) {
      s.start_epoch(std::int64_t{}, std::int64_t{}, std::move(o));
      s.batches_in_epoch();
      s.samples_in_epoch();
    };
  }

  // Starts epoch `epoch` of the source at batch `first` (> 0 when resuming mid-epoch), in
  // the order a method set (epoch_order_), else in the source's own, and in batches of the
  // size a method set (epoch_batch_size_), else the source's; Time then holds this epoch's
  // length.
  template <class Source>
  void start_source(Source& src, std::int64_t epoch, std::int64_t first) {
    if constexpr (can_resize<Source>()) src.set_batch_size(epoch_batch_size_);  // 0: the source's own
    if constexpr (can_order<Source>()) {
      if (!epoch_order_.empty()) src.start_epoch(epoch, first, epoch_order_);
      else src.start_epoch(epoch, first);
      time_.batches_per_epoch = src.batches_in_epoch();
      time_.samples_per_epoch = src.samples_in_epoch();
      return;
    }
    if (!epoch_order_.empty())
      throw config_error("fasttrain::Trainer: a method set the order of this epoch's samples, but the data source "
                         "cannot draw a given order (use data::Loader)");
    if constexpr (can_resize<Source>()) {
      src.start_epoch(epoch, first);
      time_.batches_per_epoch = src.batches_in_epoch();
      time_.samples_per_epoch = src.samples_in_epoch();
    } else if (epoch_batch_size_ != 0) {
      throw config_error("fasttrain::Trainer: a method set this epoch's batch size, but the data source cannot "
                         "change it (use data::Loader)");
    } else if constexpr (requires { src.start_epoch(epoch, first); }) {
      src.start_epoch(epoch, first);
    } else {
      src.start_epoch(epoch);
      data::Batch<cpu::eigen> skip;  // skipped batches are not uploaded
      for (std::int64_t k = 0; k < first; ++k)
        if (!src.next(skip)) break;
    }
  }

  // The next batch of `src` on the model's backend: a source of host batches (data::Loader)
  // on another backend than cpu::eigen has its batch uploaded (data::upload).
  template <class Source>
  bool next_batch(Source& src, batch_type& b) {
    if constexpr (requires { src.next(b); }) {
      return src.next(b);
    } else {
      if (!src.next(host_batch_)) return false;
      data::upload(host_batch_, b);
      return true;
    }
  }

  void roll_back(const divergence_error& e, const FitOptions& opt) {
    if (last_checkpoint_.empty())
      throw divergence_error(std::string(e.what()) +
                             "; cannot roll back: no checkpoint has been written in this run (add methods::Checkpoint "
                             "to the recipe)");
    if (result_.rollbacks >= opt.max_rollbacks)
      throw divergence_error(fasttrain::detail::cat(e.what(), "; gave up after ", result_.rollbacks, " rollback(s)"));
    const float scale = lr_scale_ * opt.rollback_lr_factor;
    const std::int64_t rollbacks = result_.rollbacks + 1;
    const std::int64_t diverged_at = time_.batch;
    load_checkpoint(last_checkpoint_);
    lr_scale_ = scale;
    result_.rollbacks = rollbacks;
    std::cerr << "fasttrain: " << e.what() << "\nfasttrain: rolled back from step " << diverged_at << " to step "
              << time_.batch << " (" << last_checkpoint_ << "); learning rate now x" << scale << "\n";
  }

  void validate(const FitOptions& opt, const data::Dataset* test) const {
    detail::require(opt.max_duration.value > 0 && std::isfinite(opt.max_duration.value),
                    "fasttrain::Trainer::fit: max_duration must be positive, got ", opt.max_duration.str());
    detail::require(opt.max_duration.unit != Unit::dur,
                    "fasttrain::Trainer::fit: max_duration is the budget itself; give it in ep, ba, sp or sec, "
                    "not dur");
    if (opt.target_accuracy) {
      detail::require(*opt.target_accuracy > 0 && *opt.target_accuracy <= 1,
                      "fasttrain::Trainer::fit: target_accuracy must be in (0, 1], got ", *opt.target_accuracy);
      detail::require(test != nullptr, "fasttrain::Trainer::fit: a target_accuracy needs a test set");
    }
    detail::require(opt.eval_chunk >= 1, "fasttrain::Trainer::fit: eval_chunk must be >= 1");
    detail::require(opt.eval_interval.value >= 0 && std::isfinite(opt.eval_interval.value),
                    "fasttrain::Trainer::fit: eval_interval must be >= 0, got ", opt.eval_interval.str());
    detail::require(opt.eval_interval.value == 0 || opt.eval_interval.unit == Unit::epoch ||
                        opt.eval_interval.unit == Unit::batch || opt.eval_interval.unit == Unit::sample,
                    "fasttrain::Trainer::fit: eval_interval must be in ep, ba or sp (evaluations at the same points "
                    "in every run), got ", opt.eval_interval.str());
    detail::require(opt.rollback_lr_factor > 0 && opt.rollback_lr_factor <= 1,
                    "fasttrain::Trainer::fit: rollback_lr_factor must be in (0, 1], got ", opt.rollback_lr_factor);
    detail::require(opt.max_rollbacks >= 0, "fasttrain::Trainer::fit: max_rollbacks must be >= 0");
    detail::require(opt.on_divergence == Divergence::stop || opt.check_finite,
                    "fasttrain::Trainer::fit: on_divergence = rollback needs check_finite");
  }

 private:
  template <class M>
  static void reset_method(M& m) {
    if constexpr (requires { m.reset(); }) m.reset();
  }

  void check_dataset(const char* which, const data::Dataset& ds) {
    const std::string who = std::string("fasttrain::Trainer::fit: the ") + which + " (" + ds.name + ")";
    if (ds.size() == 0) throw config_error(who + " is empty");
    try {
      (void)model_.output_shape(ds.sample_shape);
    } catch (const shape_error& e) {
      throw shape_error(who + " does not fit the model: " + e.what());
    }
    if constexpr (Model::out_features != nn::any)
      if (ds.num_classes > Model::out_features)
        throw shape_error(detail::cat(who, " has ", ds.num_classes, " classes but the model has only ",
                                      Model::out_features, " outputs"));
  }

  // One optimizer step on `batch`: fires batch_begin .. after_step in order and advances
  // Time by one batch. Returns the batch's loss.
  // `fresh`: a batch new from the source (false: a repeat asked for by a batch_end hook),
  // which advances the epoch and the sample count.
  template <schedule::Schedule Sched>
  float train_step(batch_type& batch, const Sched& sched, bool check_finite, bool fresh = true) {
    const std::int64_t drawn = fresh ? batch.size() : 0;  // before hooks (SelectiveBackprop) shrink it
    batch_context bctx{batch, model_, time_, nullptr, &*data_};
    emit<event::batch_begin>(bctx);
    emit<event::before_forward>(bctx);

    const tensor& out = timed<Phase::forward>([&]() -> const tensor& { return model_.forward(batch.inputs, nn::Mode::train); });
    if constexpr (profiled) timer().add_step(batch.size(), batch.inputs.shape);
    forward_context fwd{batch, out, model_, time_};
    emit<event::after_forward>(fwd);

    nn::Targets<backend> targets{&batch.labels, nullptr};
    float loss_value = std::nan("");
    loss_context lctx{batch, out, targets, loss_value, time_};
    emit<event::before_loss>(lctx);
    loss_value = timed<Phase::loss>([&] { return loss_.forward(out, targets); });
    emit<event::after_loss>(lctx);
    if (check_finite && !std::isfinite(loss_value)) diverged(loss_value, batch);
    last_finite_loss_ = loss_value;

    timed<Phase::loss>([&] { loss_.backward(grad_out_); });
    backward_context bw{batch, grad_out_, loss_value, model_, time_};
    emit<event::before_backward>(bw);
    timed<Phase::backward>([&] { model_.backward(grad_out_); });
    emit<event::after_backward>(bw);

    float lr_multiplier = sched(time_) * lr_scale_;
    step_batch_ = &batch;
    step_targets_ = &targets;
    const GradientRecompute recompute(&Trainer::recompute_thunk, this);
    step_context sctx{model_, optimizer_, lr_multiplier, time_, &recompute};
    emit<event::before_step>(sctx);
    sctx.recompute = nullptr;
    step_batch_ = nullptr;
    step_targets_ = nullptr;
    if (!sctx.skip_step) {
      if (check_finite) timed<Phase::checks>([&] { check_gradients(loss_value); });
      timed<Phase::step>([&] { optimizer_.step(model_, lr_multiplier); });
    }
    emit<event::after_step>(sctx);

    ++time_.batch;
    if (fresh) ++time_.batch_in_epoch;
    time_.sample += drawn;
    return loss_value;
  }

 private:
  // A gradient that is NaN or infinite while the loss is finite (an overflow in backward):
  // caught before the optimizer writes it into the weights.
  void check_gradients(float loss_value) {
    // One check for all gradients (on a GPU: one wait instead of one per tensor).
    std::vector<typename backend::const_view_type> grads;
    model_.for_each_parameter([&](auto&, auto& g) {
      grads.push_back(backend::view(static_cast<const float*>(g.data()), g.rows(), g.cols()));
    });
    const auto bad = static_cast<std::ptrdiff_t>(backend::first_nonfinite(grads));
    if (bad >= 0)
      throw divergence_error(detail::cat("fasttrain::Trainer: the gradient of ",
                                         model_.parameter_names()[static_cast<std::size_t>(bad)],
                                         " is not finite at step ", time_.batch,
                                         " (epoch ", time_.epoch, ", batch ", time_.batch_in_epoch, ") although the loss is ",
                                         loss_value, "; last finite loss ", last_finite_loss_,
                                         "; is the learning rate too high?"));
  }

  // The index of the first parameter tensor (in for_each_parameter order) for which
  // pred(value, gradient) holds, or -1; the rest are not looked at.
  template <class Pred>
  std::ptrdiff_t first_parameter(Pred&& pred) {
    std::ptrdiff_t i = 0, found = -1;
    model_.for_each_parameter([&](auto& p, auto& g) {
      if (found < 0 && pred(p, g)) found = i;
      ++i;
    });
    return found;
  }

  // GradientRecompute for before_step hooks: forward, loss and backward again on this
  // step's batch and targets.
  static float recompute_thunk(void* self) { return static_cast<Trainer*>(self)->recompute_gradients(); }
  float recompute_gradients() {
    if (!step_batch_ || !step_targets_)
      throw std::logic_error("fasttrain::GradientRecompute: only a before_step hook may recompute the gradients");
    const tensor& out = model_.forward(step_batch_->inputs, nn::Mode::train);
    const float loss_value = loss_.forward(out, *step_targets_);
    loss_.backward(grad_out_);
    model_.backward(grad_out_);
    return loss_value;
  }

  [[noreturn]] void diverged(float loss_value, const batch_type& batch) {
    std::string bad =
        "none (every parameter and gradient is finite: the network's outputs overflowed; is the learning "
        "rate too high?)";
    std::vector<float> host(static_cast<std::size_t>(batch.inputs.data.size()));
    backend::to_host(batch.inputs.data, host.data());
    const Eigen::Map<const Eigen::MatrixXf> in(host.data(), batch.inputs.data.rows(), batch.inputs.data.cols());
    for (Eigen::Index j = 0; j < in.cols(); ++j)
      if (!in.col(j).allFinite()) {
        bad = detail::cat("none; the batch's inputs hold a non-finite value (sample at dataset index ",
                          static_cast<std::size_t>(j) < batch.indices.size() ? batch.indices[static_cast<std::size_t>(j)] : -1,
                          ")");
        break;
      }
    bool value_finite = true;
    const auto i = first_parameter([&](auto& p, auto& g) {
      value_finite = backend::all_finite(p);
      return !value_finite || !backend::all_finite(g);
    });
    if (i >= 0)
      bad = model_.parameter_names()[static_cast<std::size_t>(i)] + (value_finite ? " (its gradient)" : "");
    throw divergence_error(detail::cat("fasttrain::Trainer: loss is ", std::isnan(loss_value) ? "NaN" : "infinite",
                                       " at step ", time_.batch, " (epoch ", time_.epoch, ", batch ",
                                       time_.batch_in_epoch, "); last finite loss ", last_finite_loss_,
                                       "; first non-finite parameter: ", bad));
  }

 private:
  Model& model_;
  Optimizer optimizer_;
  Loss loss_;
  methods_tuple methods_;
  Time time_;
  batch_type batch_;
  data::Batch<cpu::eigen> host_batch_;  // staging for next_batch when the backend is not cpu::eigen
  tensor grad_out_;
  float last_finite_loss_ = std::nan("");
  // The run in progress (members so that checkpoints capture them).
  Result result_;
  double epoch_loss_sum_ = 0.0;
  std::int64_t epoch_loss_count_ = 0;
  float lr_scale_ = 1.f;          // lowered by each rollback
  std::string last_checkpoint_;   // written or resumed from in this run
  Duration eval_interval_{};      // of this run, and the next point to evaluate at within epochs
  double next_eval_ = 0;
  std::string source_config_;
  std::vector<std::int64_t> epoch_order_;  // set by an epoch_begin hook; empty: the source's order
  std::int64_t epoch_batch_size_ = 0;      // set by an epoch_begin hook; 0: the source's batch size
  bool repeat_batch_ = false;              // set by a batch_end hook: train on batch_ again
  std::optional<DataControl> data_;
  const batch_type* step_batch_ = nullptr;           // during before_step: for GradientRecompute
  const nn::Targets<backend>* step_targets_ = nullptr;

  template <class E, class Ctx>
  void emit(Ctx& ctx) {
    if constexpr (num_methods > 0) {
      [&]<std::size_t... K>(std::index_sequence<K...>) {
        if constexpr (E::reversed)
          (invoke<E>(std::get<num_methods - 1 - K>(methods_), ctx), ...);
        else
          (invoke<E>(std::get<K>(methods_), ctx), ...);
      }(std::make_index_sequence<num_methods>{});
    }
  }
  template <class E, class M, class Ctx>
  void invoke(M& m, Ctx& ctx) {
    if constexpr (detail::declares<E, typename M::events>::value) {
      // Hook times are training time: evaluation's hooks are part of the eval phase.
      if constexpr (profiled && !PhaseTimer<M> && !std::is_same_v<E, event::eval_begin> &&
                    !std::is_same_v<E, event::eval_end>) {
        const auto t0 = std::chrono::steady_clock::now();
        E::call(m, ctx);
        timer().add_method(index_of<M>(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      } else {
        E::call(m, ctx);
      }
    }
  }

  // ---- phase timing (compiled only when the recipe holds a PhaseTimer) ---------------
  template <class M, std::size_t I = 0>
  static constexpr std::size_t index_of() {
    if constexpr (std::is_same_v<M, std::tuple_element_t<I, methods_tuple>>) return I;
    else return index_of<M, I + 1>();
  }
  template <std::size_t I = 0>
  static constexpr std::size_t timer_index() {
    if constexpr (PhaseTimer<std::tuple_element_t<I, methods_tuple>>) return I;
    else return timer_index<I + 1>();
  }
  auto& timer() requires profiled { return std::get<timer_index()>(methods_); }
  std::vector<std::string> method_names() const {
    std::vector<std::string> names;
    std::apply(
        [&](const auto&... m) {
          ((names.push_back([&] {
             if constexpr (requires { m.name(); }) return std::string(m.name());
             else return detail::cat("method ", names.size());
           }())),
           ...);
        },
        methods_);
    return names;
  }
  /// Runs f(), adding its wall-clock time to phase P when the recipe is profiled.
  template <Phase P, class F>
  decltype(auto) timed(F&& f) {
    if constexpr (profiled) {
      const auto t0 = std::chrono::steady_clock::now();
      struct Add {
        Trainer* self;
        std::chrono::steady_clock::time_point t0;
        ~Add() { self->timer().add_phase(P, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()); }
      } add{this, t0};
      return f();
    } else {
      return f();
    }
  }
};

}  // namespace fasttrain
