// fasttrain/train/events.hpp -- the events of the training loop, in the order they fire.
//
//   fit_begin -> [ epoch_begin -> [ batch_begin -> before_forward -> after_forward ->
//   before_loss -> after_loss -> before_backward -> after_backward -> before_step ->
//   after_step -> batch_end ]* -> epoch_end -> eval_begin -> eval_end ]* -> fit_end
//
// A method handles event X by declaring it in `using events = fasttrain::events<...>`
// and defining `on_X(Context&)`. `after_*` events visit methods in reverse order, so a
// method can undo in after_X what it did in before_X (Composer's rule).
#pragma once

namespace fasttrain {

namespace event {
#define FASTTRAIN_EVENT(NAME, REVERSED)                                        \
  struct NAME {                                                                \
    static constexpr const char* name = #NAME;                                 \
    static constexpr bool reversed = REVERSED;                                 \
    template <class M, class Ctx>                                              \
    static constexpr bool callable = requires(M& m, Ctx& c) { m.on_##NAME(c); }; \
    template <class M>                                                         \
    static constexpr bool named = requires { &M::on_##NAME; };                 \
    template <class M, class Ctx>                                              \
    static void call(M& m, Ctx& c) { m.on_##NAME(c); }                         \
  };
FASTTRAIN_EVENT(fit_begin, false)
FASTTRAIN_EVENT(epoch_begin, false)
FASTTRAIN_EVENT(batch_begin, false)
FASTTRAIN_EVENT(before_forward, false)
FASTTRAIN_EVENT(after_forward, true)
FASTTRAIN_EVENT(before_loss, false)
FASTTRAIN_EVENT(after_loss, true)
FASTTRAIN_EVENT(before_backward, false)
FASTTRAIN_EVENT(after_backward, true)
FASTTRAIN_EVENT(before_step, false)
FASTTRAIN_EVENT(after_step, true)
FASTTRAIN_EVENT(batch_end, false)
FASTTRAIN_EVENT(epoch_end, false)
FASTTRAIN_EVENT(eval_begin, false)
FASTTRAIN_EVENT(eval_end, true)
FASTTRAIN_EVENT(fit_end, false)
#undef FASTTRAIN_EVENT
}  // namespace event

/// A list of event types, used by methods to declare the events they handle.
template <class... Es>
struct events {};

/// Every event, in firing order.
using all_events =
    events<event::fit_begin, event::epoch_begin, event::batch_begin, event::before_forward, event::after_forward,
           event::before_loss, event::after_loss, event::before_backward, event::after_backward,
           event::before_step, event::after_step, event::batch_end, event::epoch_end, event::eval_begin,
           event::eval_end, event::fit_end>;

}  // namespace fasttrain
