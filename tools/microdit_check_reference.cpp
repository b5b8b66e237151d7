// microdit-check-reference DIR: compares our MicroDiT with tensors the official implementation
// computed (forward, masked forward, guidance, gradients, EDM losses, sampler) and exits non-zero
// on any case above its bound.
#include <ATen/Context.h>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "microdit/nn/execution.h"
#include "microdit/parity/reference_check.h"
#include "microdit/util/arg_cursor.h"
#include "microdit/util/device.h"
#include "microdit/util/error_message.h"

namespace {
constexpr const char* kUsage = R"(usage: microdit-check-reference DIR [options]

Runs the reference set in DIR (config.json, weights.safetensors, weights.pt, cases.safetensors)
through our model and prints each case's relative error ||ours - ref|| / ||ref||.

options:
  --weights W   safetensors | pt | both (default both: each case once per weights file)
  --device D    cpu (default) or cuda; on cuda TF32 is off
  --bf16        run under bf16 autocast and only report errors (bounds are for float32)
  --execution M reference (default: the plain LibTorch operations) or fast (the fused
                operations the training configs run: the same function within rounding)
  -h, --help    this text

exit status: 0 all cases within bounds, 1 a case failed, 2 bad arguments or unreadable data
)";

struct Args {
  std::string dir;
  std::vector<std::string> weights{"weights.safetensors", "weights.pt"};
  std::string device = "cpu";
  bool bf16 = false;
  microdit::nn::ExecutionMode execution = microdit::nn::ExecutionMode::reference;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (microdit::util::ArgCursor args(argc, argv); args.next(kUsage);) {
    const std::string& arg = args.flag();
    if (arg == "--weights") {
      const auto w = args.value();
      if (w == "both")
        a.weights = {"weights.safetensors", "weights.pt"};
      else if (w == "safetensors" || w == "pt")
        a.weights = {"weights." + w};
      else
        throw std::invalid_argument("--weights must be safetensors, pt or both, got " + w);
    } else if (arg == "--device") {
      a.device = args.value();
    } else if (arg == "--bf16") {
      a.bf16 = true;
    } else if (arg == "--execution") {
      a.execution = microdit::nn::parse_execution_mode(args.value(), "--execution");
    } else if (!arg.empty() && arg[0] == '-') {
      throw std::invalid_argument("unknown option " + arg);
    } else if (a.dir.empty()) {
      a.dir = arg;
    } else {
      throw std::invalid_argument("more than one directory given: " + arg);
    }
  }
  if (a.dir.empty()) throw std::invalid_argument("no reference directory given");
  return a;
}

int run(const Args& args) {
  const auto ref = microdit::parity::load_reference_set(args.dir);
  const at::Device device = microdit::util::resolve_device(args.device, "--device");
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  int failures = 0, cases = 0;
  for (const auto& weights : args.weights) {
    microdit::parity::CheckOptions options{weights, device, args.bf16, args.execution};
    for (const auto& r : microdit::parity::check_reference(ref, options)) {
      const bool ok = args.bf16 || r.passed();
      fmt::print("{:<20} {:<58} {:>11.3e} {:>9.1e} {}\n", weights, r.name, r.error, r.bound,
                 args.bf16 ? "REPORT" : (ok ? "ok" : "FAIL"));
      failures += ok ? 0 : 1;
      ++cases;
    }
  }
  fmt::print("{} cases, {} failed ({}, {}, {}, {})\n", cases, failures, args.dir, args.device,
             args.bf16 ? "bf16 autocast" : "float32",
             microdit::nn::execution_mode_name(args.execution));
  return failures == 0 ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "microdit-check-reference: " << microdit::util::error_message(e)
              << " (see microdit-check-reference --help)\n";
    return 2;
  }
  // Status 1 is kept for a case that fails its bound: a reference set that cannot be read, or a
  // device that is not there, is 2, so that a script can tell the two apart.
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "microdit-check-reference: " << microdit::util::error_message(e) << "\n";
    return 2;
  } catch (...) {
    std::cerr << "microdit-check-reference: unknown error (an exception that is not a std::exception)\n";
    return 2;
  }
}
