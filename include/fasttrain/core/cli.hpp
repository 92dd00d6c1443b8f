// fasttrain/core/cli.hpp -- the small command-line parser the examples and benchmarks share.
//
//   cli::Args args("fashion_mnist_mlp", "Trains a 784-256-128-10 MLP on Fashion-MNIST.");
//   auto epochs = args.add<int>("epochs", 10, "training epochs");
//   args.parse(argc, argv);            // --epochs 5 or --epochs=5; --help prints usage
//   int e = *epochs;
//
// Unknown flags, missing values and unparsable numbers raise config_error naming the flag.
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "fasttrain/core/error.hpp"

namespace fasttrain::cli {

class Args {
 public:
  Args(std::string program, std::string description) : program_(std::move(program)), desc_(std::move(description)) {}

  /// Registers --name with a default; the returned pointer holds the parsed value.
  template <class T>
  std::shared_ptr<T> add(const std::string& name, T def, const std::string& help) {
    auto value = std::make_shared<T>(def);
    Flag f;
    f.help = help;
    f.def = to_string(def);
    f.set = [value, name](const std::string& text) { *value = parse_value<T>(name, text); };
    f.is_bool = std::is_same_v<T, bool>;
    flags_[name] = std::move(f);
    order_.push_back(name);
    return value;
  }

  /// Parses argv; on --help prints usage and exits 0.
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::fputs(usage().c_str(), stdout);
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) throw config_error(program_ + ": unexpected argument '" + a + "'\n" + usage());
      a = a.substr(2);
      std::string value;
      bool has_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_value = true;
      }
      auto it = flags_.find(a);
      if (it == flags_.end()) throw config_error(program_ + ": unknown flag --" + a + "\n" + usage());
      if (!has_value) {
        if (it->second.is_bool) {
          value = "true";
        } else {
          if (i + 1 >= argc) throw config_error(program_ + ": flag --" + a + " needs a value");
          value = argv[++i];
        }
      }
      it->second.set(value);
    }
  }

  std::string usage() const {
    std::string u = "usage: " + program_ + " [flags]\n" + desc_ + "\n\nflags:\n";
    for (const auto& n : order_) {
      const auto& f = flags_.at(n);
      u += "  --" + n + std::string(n.size() < 14 ? 14 - n.size() : 1, ' ') + f.help + " (default: " + f.def + ")\n";
    }
    return u;
  }

 private:
  struct Flag {
    std::string help, def;
    std::function<void(const std::string&)> set;
    bool is_bool = false;
  };

  template <class T>
  static std::string to_string(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return v.empty() ? "\"\"" : v;
    else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else return std::to_string(v);
  }

  template <class T>
  static T parse_value(const std::string& name, const std::string& text) {
    if constexpr (std::is_same_v<T, std::string>) {
      return text;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (text == "true" || text == "1" || text == "yes") return true;
      if (text == "false" || text == "0" || text == "no") return false;
      throw config_error("--" + name + ": expected true or false, got '" + text + "'");
    } else {
      T v{};
      const auto* end = text.data() + text.size();
      auto [p, ec] = std::from_chars(text.data(), end, v);
      if (ec != std::errc() || p != end)
        throw config_error("--" + name + ": '" + text + "' is not a valid " +
                           (std::is_integral_v<T> ? "integer" : "number"));
      return v;
    }
  }

  std::string program_, desc_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
};

}  // namespace fasttrain::cli
