// fasttrain/eval/flops.hpp -- floating-point operations per sample, layer by layer, forward
// and backward.
//
//   auto rows = eval::flops_table(model, Shape{1, 28, 28});   // one row per layer
//   std::cout << eval::flops_markdown(rows);
//   eval::Flops f = eval::flops(model, Shape{1, 28, 28});      // the whole network, per sample
//
// Conventions (what the numbers mean, so that they can be compared with a roofline):
// - one multiply-add is 2 FLOPs; the counts are per sample, at the given input shape;
// - Linear<In, Out>: forward 2*In*Out (+Out for the bias); backward 4*In*Out (the weight
//   gradient and the input gradient, each a GEMM as large as the forward);
// - Conv2d<InC, OutC, K>: forward 2*K*K*InC*OutC per output pixel (+1 per output for the bias),
//   backward twice that (weight gradient + input gradient);
// - the backward of the network's first layer is counted with its input gradient, which
//   Sequential skips: the totals are an upper bound by at most that GEMM;
// - element-wise and pooling layers count the operations of a direct implementation
//   (BatchNorm: 5 per value forward, 8 backward; ReLU: 1 and 1; max pooling: K*K compares per
//   output; BlurPool: the 3x3 depthwise blur, 18 per output); their time is usually set by
//   memory traffic, not by these FLOPs (see docs/profiling.md);
// - a layer type not known here counts as element-wise (1 forward, 2 backward per output
//   value) and is marked `estimated` in the table.
// FLOPs are a diagnostic: wall-clock is the measure of cost (docs/evaluation.md).
#pragma once

#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "fasttrain/nn/nn.hpp"

namespace fasttrain::eval {

/// FLOPs per sample.
struct Flops {
  double forward = 0;
  double backward = 0;
  double total() const { return forward + backward; }
  Flops& operator+=(const Flops& o) {
    forward += o.forward;
    backward += o.backward;
    return *this;
  }
};

/// One layer of flops_table: a leaf layer, or a container's own work (a Residual's addition).
struct FlopsRow {
  std::string path;   ///< position in the network, "3.body.0"
  std::string layer;  ///< the layer's type name
  Shape input, output;
  Flops flops;
  std::int64_t parameters = 0;
  bool estimated = false;  ///< a layer type this counter does not know: element-wise assumed
};

namespace detail {
// Containers are recognised by what they can do, so that types derived from them (the
// networks methods::model_for rewrites) are walked too: a chain of layers (Sequential) and a
// body with a shortcut (Residual).
template <class L>
concept Chain = requires(L& l) {
  L::num_layers;
  l.for_each_child([](auto&) {});
};
template <class L>
concept BodyAndShortcut = requires(L& l) {
  l.body();
  l.shortcut();
};

// Per-sample FLOPs of a leaf layer; `known` false marks the element-wise default.
template <class T>
struct leaf {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = false;
    const double n = static_cast<double>(out.size());
    return {n, 2 * n};
  }
};
template <std::int64_t In, std::int64_t Out, class B>
struct leaf<nn::Linear<In, Out, B>> {
  static Flops of(const Shape& in, const Shape& out, bool& known) {
    known = true;
    const double mac = static_cast<double>(in.size()) * static_cast<double>(out.size());
    return {2 * mac + static_cast<double>(out.size()), 4 * mac + static_cast<double>(out.size())};
  }
};
template <std::int64_t InC, std::int64_t OutC, std::int64_t K, std::int64_t S, std::int64_t P, class B>
struct leaf<nn::Conv2d<InC, OutC, K, S, P, B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double outputs = static_cast<double>(out.size());
    const double mac = outputs * static_cast<double>(K * K * InC);
    return {2 * mac + outputs, 4 * mac + outputs};
  }
};
template <std::int64_t C, class B>
struct leaf<nn::BatchNorm2d<C, B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double n = static_cast<double>(out.size());
    return {5 * n, 8 * n};
  }
};
template <std::int64_t C, std::int64_t G, class B>
struct leaf<nn::GhostBatchNorm2d<C, G, B>> : leaf<nn::BatchNorm2d<C, B>> {};
template <class Op, class B>
struct leaf<nn::Activation<Op, B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double n = static_cast<double>(out.size());
    return {n, n};
  }
};
template <nn::PoolKind Kind, std::int64_t K, std::int64_t S, class B>
struct leaf<nn::BasicPool2d<Kind, K, S, B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double n = static_cast<double>(out.size());
    return {static_cast<double>(K * K) * n, static_cast<double>(K * K) * n};
  }
};
template <std::int64_t S, class B>
struct leaf<nn::BasicBlurPool2d<S, B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double n = static_cast<double>(out.size());
    return {18 * n, 18 * n};
  }
};
template <class B>
struct leaf<nn::BasicGlobalAvgPool<B>> {
  static Flops of(const Shape& in, const Shape&, bool& known) {
    known = true;
    const double n = static_cast<double>(in.size());
    return {n, n};
  }
};
template <std::int64_t OH, std::int64_t OW, class B>
struct leaf<nn::BasicAdaptiveAvgPool2d<OH, OW, B>> : leaf<nn::BasicGlobalAvgPool<B>> {};
template <class B>
struct leaf<nn::BasicIdentity<B>> {
  static Flops of(const Shape&, const Shape&, bool& known) {
    known = true;
    return {};
  }
};
template <class B>
struct leaf<nn::BasicFlatten<B>> : leaf<nn::BasicIdentity<B>> {};
template <class B>
struct leaf<nn::BasicDropout<B>> {
  static Flops of(const Shape&, const Shape& out, bool& known) {
    known = true;
    const double n = static_cast<double>(out.size());
    return {n, n};
  }
};
template <std::int64_t C, std::int64_t L, class B>
struct leaf<nn::SqueezeExcite2d<C, L, B>> {
  static Flops of(const Shape& in, const Shape&, bool& known) {
    known = true;
    const double n = static_cast<double>(in.size()), fc = 2.0 * 2.0 * static_cast<double>(C * L);
    // squeeze (mean), two small Linear layers, sigmoid gate, scale
    return {n + fc + 2 * n, 2 * n + 2 * fc + 2 * n};
  }
};

template <class L>
std::int64_t count_parameters(L& layer) {
  std::int64_t n = 0;
  layer.for_each_parameter([&](auto& p, auto&) { n += static_cast<std::int64_t>(p.size()); });
  return n;
}

// Walks the network: rows (when non-null) get one entry per leaf; returns the total.
template <class L>
Flops walk(L& layer, const Shape& in, const std::string& path, std::vector<FlopsRow>* rows) {
  if constexpr (Chain<L>) {
    Flops total;
    Shape s = in;
    std::size_t i = 0;
    layer.for_each_child([&](auto& child) {
      const Shape out = child.output_shape(s);
      total += walk(child, s, path + std::to_string(i++) + ".", rows);
      s = out;
    });
    return total;
  } else if constexpr (BodyAndShortcut<L>) {
    Flops total = walk(layer.body(), in, path + "body.", rows);
    total += walk(layer.shortcut(), in, path + "shortcut.", rows);
    const Shape out = layer.output_shape(in);
    const Flops add{static_cast<double>(out.size()), static_cast<double>(out.size())};
    total += add;
    if (rows) rows->push_back({path + "add", "Residual (sum)", out, out, add, 0, false});
    return total;
  } else {
    bool known = true;
    const Shape out = layer.output_shape(in);
    const Flops f = leaf<std::remove_cv_t<L>>::of(in, out, known);
    if (rows) {
      std::string p = path;
      if (!p.empty() && p.back() == '.') p.pop_back();
      rows->push_back({p, L::name(), in, out, f, count_parameters(layer), !known});
    }
    return f;
  }
}
}  // namespace detail

/// FLOPs per sample of `model` (a layer or a network) at input shape `sample_shape`.
/// Throws shape_error when the network cannot take that shape.
template <class M>
Flops flops(const M& model, const Shape& sample_shape) {
  return detail::walk(const_cast<M&>(model), sample_shape, "", nullptr);
}

/// One row per leaf layer (in forward order), plus one per residual sum.
template <class M>
std::vector<FlopsRow> flops_table(const M& model, const Shape& sample_shape) {
  std::vector<FlopsRow> rows;
  detail::walk(const_cast<M&>(model), sample_shape, "", &rows);
  return rows;
}

/// `x` with an SI prefix: 1.23 M, 45.6 k.
inline std::string si(double x) {
  const char* units[] = {"", " k", " M", " G", " T"};
  int u = 0;
  while (x >= 1000 && u < 4) x /= 1000, ++u;
  std::ostringstream o;
  o << std::setprecision(x < 10 ? 3 : x < 100 ? 3 : 4) << x << units[u];
  return o.str();
}

/// The table as Markdown, with a total row and each layer's share of the step's FLOPs.
inline std::string flops_markdown(const std::vector<FlopsRow>& rows) {
  Flops total;
  std::int64_t params = 0;
  for (const auto& r : rows) total += r.flops, params += r.parameters;
  std::ostringstream o;
  o << "| layer | type | input | output | params | forward FLOPs | backward FLOPs | share |\n"
       "|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows)
    o << "| " << r.path << " | " << r.layer << (r.estimated ? " (estimated)" : "") << " | " << r.input.str() << " | "
      << r.output.str() << " | " << r.parameters << " | " << si(r.flops.forward) << " | " << si(r.flops.backward)
      << " | " << std::fixed << std::setprecision(1) << (total.total() > 0 ? 100 * r.flops.total() / total.total() : 0)
      << "% |\n" << std::defaultfloat;
  o << "| total | | | | " << params << " | " << si(total.forward) << " | " << si(total.backward) << " | 100% |\n";
  return o.str();
}

}  // namespace fasttrain::eval
