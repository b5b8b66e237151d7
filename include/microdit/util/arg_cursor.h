// Walking a tool's command line: `for (ArgCursor args(argc, argv); args.next();)`, compare
// args.flag(), take args.value() for options that have one.
#pragma once
#include <cstdlib>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>

#include "microdit/util/error_message.h"
#include "microdit/util/parse_number.h"

namespace microdit::util {

class ArgCursor {
 public:
  ArgCursor(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Moves to the next argument; prints `usage` and exits 0 on -h / --help.
  bool next(const char* usage) {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    if (flag_ == "-h" || flag_ == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    return true;
  }
  const std::string& flag() const { return flag_; }
  // The argument after the current flag; throws "<flag> needs a value" at the end.
  std::string value() {
    if (i_ + 1 >= argc_) throw std::invalid_argument(flag_ + " needs a value");
    return argv_[++i_];
  }
  // The argument after the current flag as a number in range; errors name the flag.
  std::int64_t int_value(std::int64_t min,
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    return parse_int(value(), flag_, min, max);
  }
  std::uint64_t seed_value() { return parse_uint64(value(), flag_); }
  double number_value(double min, double max = std::numeric_limits<double>::max()) {
    return parse_double(value(), flag_, min, max);
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string flag_;
};

// The main() of a tool: `parse` errors print "<name>: <message> (see <name> --help)" and exit 2;
// errors from `run` print "<name>: <message>" and exit 1. One line each.
template <class Args>
int run_tool(const char* name, int argc, char** argv, const std::function<Args(int, char**)>& parse,
             const std::function<int(Args&)>& run) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << error_message(e) << " (see " << name << " --help)\n";
    return 2;
  }
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << error_message(e) << "\n";
    return 1;
  } catch (...) {
    std::cerr << name << ": unknown error (an exception that is not a std::exception)\n";
    return 1;
  }
}

}  // namespace microdit::util
