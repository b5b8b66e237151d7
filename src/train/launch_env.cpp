#include "microdit/train/launch_env.h"

#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>

#include "microdit/util/parse_number.h"

namespace microdit::train {
namespace {

int64_t int_or(const EnvLookup& env, const std::string& name, int64_t fallback) {
  const auto text = env(name);
  return text ? util::parse_int(*text, name) : fallback;
}

void check_ranks(const LaunchEnv& e, const std::string& rank_var, const std::string& size_var) {
  if (e.world_size < 1) {
    throw std::invalid_argument(fmt::format("{}={} must be >= 1", size_var, e.world_size));
  }
  if (e.rank < 0 || e.rank >= e.world_size) {
    throw std::invalid_argument(
        fmt::format("{}={} is outside [0, {}={})", rank_var, e.rank, size_var, e.world_size));
  }
  if (e.master_port < 1 || e.master_port > 65535) {
    throw std::invalid_argument(fmt::format("MASTER_PORT={} is not a port", e.master_port));
  }
}

LaunchEnv torchrun_env(const EnvLookup& env) {
  LaunchEnv e;
  e.launcher = "torchrun";
  if (!env("WORLD_SIZE")) throw std::invalid_argument("RANK is set but WORLD_SIZE is not");
  e.rank = int_or(env, "RANK", 0);
  e.world_size = int_or(env, "WORLD_SIZE", 1);
  e.local_rank = int_or(env, "LOCAL_RANK", e.rank);
  e.master_addr = env("MASTER_ADDR").value_or(e.master_addr);
  e.master_port = int_or(env, "MASTER_PORT", e.master_port);
  e.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  if (e.agent_store) {
    e.store_prefix = "/worker/attempt_" + env("TORCHELASTIC_RESTART_COUNT").value_or("0");
  }
  check_ranks(e, "RANK", "WORLD_SIZE");
  return e;
}

LaunchEnv slurm_env(const EnvLookup& env) {
  LaunchEnv e;
  e.launcher = "slurm";
  e.rank = int_or(env, "SLURM_PROCID", 0);
  e.world_size = int_or(env, "SLURM_NTASKS", 1);
  e.local_rank = int_or(env, "SLURM_LOCALID", 0);
  auto nodes = env("SLURM_JOB_NODELIST");
  if (!nodes) nodes = env("SLURM_NODELIST");
  if (const auto addr = env("MASTER_ADDR")) {
    e.master_addr = *addr;
  } else if (nodes) {
    e.master_addr = first_slurm_host(*nodes);
  } else if (e.world_size > 1) {
    throw std::invalid_argument(
        "Slurm: neither MASTER_ADDR nor SLURM_JOB_NODELIST says where rank 0 runs");
  }
  e.master_port = int_or(env, "MASTER_PORT", e.master_port);
  check_ranks(e, "SLURM_PROCID", "SLURM_NTASKS");
  return e;
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

LaunchEnv read_launch_env(const EnvLookup& env) {
  if (env("RANK")) return torchrun_env(env);
  if (env("SLURM_PROCID") && env("SLURM_NTASKS")) return slurm_env(env);
  return {};
}

std::string first_slurm_host(std::string_view nodelist) {
  std::string host;
  for (std::size_t i = 0; i < nodelist.size(); ++i) {
    const char c = nodelist[i];
    if (c == ',') break;  // the first host ends at the first comma outside brackets
    if (c != '[') {
      host += c;
      continue;
    }
    const auto close = nodelist.find(']', i);
    if (close == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("Slurm node list '{}': unclosed '['", nodelist));
    }
    // The first value of a range list "01-04,07" is its text up to the first '-' or ','.
    const auto range = nodelist.substr(i + 1, close - i - 1);
    host += range.substr(0, range.find_first_of("-,"));
    i = close;
  }
  if (host.empty()) {
    throw std::invalid_argument(fmt::format("Slurm node list '{}' names no host", nodelist));
  }
  return host;
}

}  // namespace microdit::train
