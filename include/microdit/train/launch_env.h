// Where this process sits in a multi-process run, read from the environment its launcher set:
//   torchrun  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; when
//             TORCHELASTIC_USE_AGENT_STORE is "True" the agent already hosts the TCPStore, every
//             rank connects as a client under the prefix /worker/attempt_<TORCHELASTIC_RESTART_COUNT>
//             (as torch.distributed's env:// rendezvous does)
//   Slurm     SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the store host is MASTER_ADDR or else
//             the first host of SLURM_JOB_NODELIST (e.g. "node[01-04,07]" -> "node01")
// RANK wins over SLURM_PROCID (torchrun started inside a Slurm job). Neither: a world of one.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace microdit::train {

struct LaunchEnv {
  std::string launcher = "none";  // none | torchrun | slurm
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;  // the GPU index on this node
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;  // PyTorch's default
  bool agent_store = false;     // torchrun's agent hosts the store: rank 0 is a client too
  std::string store_prefix;     // key prefix inside the store ("" outside torchrun's agent store)

  bool distributed() const { return world_size > 1; }
};

// Reads one environment variable; std::nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
std::optional<std::string> process_env(const std::string& name);

// Throws std::invalid_argument naming the variable when a value is not an integer or out of range
// (RANK >= WORLD_SIZE, WORLD_SIZE < 1, a port outside 1..65535), or when RANK is set without
// WORLD_SIZE.
LaunchEnv read_launch_env(const EnvLookup& env = process_env);

// The first host of a Slurm host list: "node[01-04,07],gpu5" -> "node01",
// "rack[2-3]-n[7,9]" -> "rack2-n7", "a,b" -> "a". Throws std::invalid_argument on an unclosed
// bracket or an empty list.
std::string first_slurm_host(std::string_view nodelist);

}  // namespace microdit::train
