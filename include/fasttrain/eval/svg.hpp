// fasttrain/eval/svg.hpp -- a small, dependency-free SVG line plot: enough to look at
// accuracy-against-time curves and frontiers in a browser, with no other tool.
//
//   eval::SvgPlot p;
//   p.title = "..."; p.x_label = "seconds"; p.y_label = "accuracy"; p.hline = 0.91;
//   p.add(points, /*color index*/ 0, /*thick*/ true, "baseline");   // thick series go in the legend
//   std::ofstream("plot.svg") << p.render();
//
// Axes are linear, with "nice" ticks (1, 2, 5 x 10^k) covering every point; the y axis spans
// the data (and hline), not [0, 1], so differences near the top stay visible.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

#include "fasttrain/eval/stats.hpp"

namespace fasttrain::eval {

class SvgPlot {
 public:
  std::string title, x_label, y_label;
  double hline = std::nan("");  ///< a dashed horizontal line (the target), NaN: none
  int width = 760, height = 480;

  /// A series: `color` indexes a fixed palette; thick series are drawn on top, with markers,
  /// and named in the legend.
  void add(std::vector<Point> pts, std::size_t color, bool thick, std::string label) {
    series_.push_back({std::move(pts), color, thick, std::move(label)});
  }

  std::string render() const {
    double x0 = 0, x1 = 0, y0 = 1, y1 = 0;
    bool any = false;
    for (const auto& s : series_)
      for (const auto& p : s.pts) {
        if (!std::isfinite(p.seconds) || !std::isfinite(p.accuracy)) continue;
        x1 = std::max(x1, p.seconds);
        y0 = std::min(y0, p.accuracy);
        y1 = std::max(y1, p.accuracy);
        any = true;
      }
    if (std::isfinite(hline)) y0 = std::min(y0, hline), y1 = std::max(y1, hline);
    if (!any) x1 = 1, y0 = 0, y1 = 1;
    const double xs = nice_step(x1 - x0), ys = nice_step(y1 - y0);
    x1 = std::ceil(x1 / xs) * xs;
    y0 = std::floor(y0 / ys) * ys;
    y1 = std::ceil(y1 / ys) * ys;
    if (x1 <= x0) x1 = x0 + xs;
    if (y1 <= y0) y1 = y0 + ys;
    const double L = 70, R = 180, T = 40, B = 55;
    const double pw = width - L - R, ph = height - T - B;
    auto X = [&](double v) { return L + pw * (v - x0) / (x1 - x0); };
    auto Y = [&](double v) { return T + ph * (1 - (v - y0) / (y1 - y0)); };

    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    o << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << esc(title) << "</text>\n";
    for (double v = x0; v <= x1 + xs / 2; v += xs)
      o << "<line x1=\"" << X(v) << "\" y1=\"" << T << "\" x2=\"" << X(v) << "\" y2=\"" << T + ph
        << "\" stroke=\"#e4e4e4\"/><text x=\"" << X(v) << "\" y=\"" << T + ph + 16 << "\" text-anchor=\"middle\">"
        << tick(v, xs) << "</text>\n";
    for (double v = y0; v <= y1 + ys / 2; v += ys)
      o << "<line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << L + pw << "\" y2=\"" << Y(v)
        << "\" stroke=\"#e4e4e4\"/><text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">"
        << tick(v, ys) << "</text>\n";
    o << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"none\" stroke=\"#333\"/>\n";
    o << "<text x=\"" << L + pw / 2 << "\" y=\"" << height - 12 << "\" text-anchor=\"middle\">" << esc(x_label)
      << "</text>\n<text transform=\"translate(18," << T + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
      << esc(y_label) << "</text>\n";
    if (std::isfinite(hline))
      o << "<line x1=\"" << L << "\" y1=\"" << Y(hline) << "\" x2=\"" << L + pw << "\" y2=\"" << Y(hline)
        << "\" stroke=\"#555\" stroke-dasharray=\"6,4\"/><text x=\"" << L + pw - 4 << "\" y=\"" << Y(hline) - 5
        << "\" text-anchor=\"end\" fill=\"#555\">target " << hline << "</text>\n";
    for (int pass = 0; pass < 2; ++pass)
      for (const auto& s : series_) {
        if (s.thick != (pass == 1) || s.pts.empty()) continue;
        const char* c = color(s.color);
        o << "<polyline fill=\"none\" stroke=\"" << c << "\" stroke-width=\"" << (s.thick ? 2.5 : 1)
          << "\" stroke-opacity=\"" << (s.thick ? 1 : 0.35) << "\" points=\"";
        for (const auto& p : s.pts)
          if (std::isfinite(p.seconds) && std::isfinite(p.accuracy)) o << X(p.seconds) << "," << Y(p.accuracy) << " ";
        o << "\"/>\n";
        if (s.thick)
          for (const auto& p : s.pts)
            if (std::isfinite(p.seconds) && std::isfinite(p.accuracy))
              o << "<circle cx=\"" << X(p.seconds) << "\" cy=\"" << Y(p.accuracy) << "\" r=\"4\" fill=\"" << c << "\"/>\n";
      }
    double ly = T + 10;
    for (const auto& s : series_) {
      if (!s.thick || s.label.empty()) continue;
      o << "<line x1=\"" << L + pw + 12 << "\" y1=\"" << ly << "\" x2=\"" << L + pw + 36 << "\" y2=\"" << ly
        << "\" stroke=\"" << color(s.color) << "\" stroke-width=\"2.5\"/><text x=\"" << L + pw + 42 << "\" y=\"" << ly + 4
        << "\">" << esc(s.label) << "</text>\n";
      ly += 20;
    }
    o << "<text x=\"" << L + pw + 12 << "\" y=\"" << ly + 4 << "\" fill=\"#777\">thin: single runs</text>\n";
    o << "</svg>\n";
    return o.str();
  }

 private:
  struct Series {
    std::vector<Point> pts;
    std::size_t color;
    bool thick;
    std::string label;
  };
  std::vector<Series> series_;

  static const char* color(std::size_t i) {
    static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    return palette[i % 8];
  }
  static double nice_step(double range) {
    if (!(range > 0)) return 1;
    const double raw = range / 6, p = std::pow(10.0, std::floor(std::log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
  }
  static std::string tick(double v, double step) {
    std::ostringstream o;
    const int digits = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    o.setf(std::ios::fixed);
    o.precision(digits);
    o << (std::abs(v) < step * 1e-6 ? 0.0 : v);
    return o.str();
  }
  static std::string esc(const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == '<') r += "&lt;";
      else if (c == '>') r += "&gt;";
      else if (c == '&') r += "&amp;";
      else r += c;
    }
    return r;
  }
};

}  // namespace fasttrain::eval
