// Data-parallel training across processes on the loopback (Gloo): launcher environments, a world
// of 2 against a world of 1 (gradients, weights, ZeRO-2 moments), resume across world sizes, and
// a rank that dies or hangs. The ranks are child processes of this test program running the
// DistributedWorker.Train case with the launcher's variables set, as torchrun would start them.
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "microdit/io/json.h"
#include "microdit/io/safetensors.h"
#include "microdit/io/state_dict.h"
#include "microdit/train/checkpoint.h"
#include "microdit/train/config.h"
#include "microdit/train/gradient_buckets.h"
#include "microdit/train/launch_env.h"
#include "microdit/train/optimizer.h"
#include "microdit/train/process_group.h"
#include "microdit/train/sample_grid.h"
#include "microdit/train/sharded_adamw.h"
#include "microdit/train/step_graph.h"
#include "microdit/train/train_step.h"
#include "microdit/train/trainer.h"
#include "microdit/util/device.h"
#include "test_support.h"

extern char** environ;

namespace microdit {
namespace {
namespace fs = std::filesystem;
using Env = std::map<std::string, std::string>;

train::EnvLookup lookup(const Env& env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    const auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

TEST(LaunchEnv, NoLauncherIsAWorldOfOne) {
  const auto e = train::read_launch_env(lookup({}));
  EXPECT_EQ(e.launcher, "none");
  EXPECT_EQ(e.world_size, 1);
  EXPECT_FALSE(e.distributed());
}

TEST(LaunchEnv, TorchrunVariables) {
  const auto e = train::read_launch_env(
      lookup({{"RANK", "5"}, {"WORLD_SIZE", "16"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node3"},
              {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "False"}}));
  EXPECT_EQ(e.launcher, "torchrun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 16);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node3");
  EXPECT_EQ(e.master_port, 29400);
  EXPECT_FALSE(e.agent_store);
  EXPECT_EQ(e.store_prefix, "");
}

TEST(LaunchEnv, TorchrunAgentStoreMakesEveryRankAClientUnderTheAttemptPrefix) {
  const auto e = train::read_launch_env(
      lookup({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
              {"TORCHELASTIC_RESTART_COUNT", "3"}}));
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.store_prefix, "/worker/attempt_3");
}

TEST(LaunchEnv, SlurmVariablesAndTheFirstHostOfTheNodeList) {
  const auto e = train::read_launch_env(
      lookup({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "32"}, {"SLURM_LOCALID", "1"},
              {"SLURM_JOB_NODELIST", "gpu[07-10,12]"}}));
  EXPECT_EQ(e.launcher, "slurm");
  EXPECT_EQ(e.rank, 9);
  EXPECT_EQ(e.world_size, 32);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "gpu07");
  EXPECT_EQ(e.master_port, 29500);
  // torchrun inside a Slurm allocation: its variables win.
  const auto t = train::read_launch_env(lookup(
      {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"RANK", "3"}, {"WORLD_SIZE", "8"}}));
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 3);
}

TEST(LaunchEnv, FirstSlurmHost) {
  EXPECT_EQ(train::first_slurm_host("node[01-04,07]"), "node01");
  EXPECT_EQ(train::first_slurm_host("node[07,01-04],x"), "node07");
  EXPECT_EQ(train::first_slurm_host("a1,b[2-3]"), "a1");
  EXPECT_EQ(train::first_slurm_host("rack[2-3]-n[7,9]"), "rack2-n7");
  EXPECT_EQ(train::first_slurm_host("single"), "single");
  EXPECT_THROW(train::first_slurm_host("node[01-04"), std::invalid_argument);
  EXPECT_THROW(train::first_slurm_host(""), std::invalid_argument);
}

TEST(LaunchEnv, BadValuesNameTheVariable) {
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { train::read_launch_env(lookup({{"RANK", "1"}})); }, "RANK is set but WORLD_SIZE",
      {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { train::read_launch_env(lookup({{"RANK", "x"}, {"WORLD_SIZE", "2"}})); },
      "RANK is 'x', expected an integer", {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { train::read_launch_env(lookup({{"RANK", "2"}, {"WORLD_SIZE", "2"}})); },
      "RANK=2 is outside [0, WORLD_SIZE=2)", {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] {
        train::read_launch_env(
            lookup({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}));
      },
      "MASTER_PORT=70000 is not a port", {}));
  EXPECT_TRUE(test::throws_with<std::invalid_argument>(
      [] { train::read_launch_env(lookup({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}})); },
      "Slurm: neither MASTER_ADDR nor SLURM_JOB_NODELIST", {}));
}

// One rank of a multi-process run; runs only as a child process of the tests below, which set
// MICRODIT_WORKER_DIR (holding worker.yaml) and the torchrun variables. Writes the gradients of
// its last step to grads-rank<R>.safetensors there.
TEST(DistributedWorker, Train) {
  const auto dir = train::process_env("MICRODIT_WORKER_DIR");
  if (!dir) GTEST_SKIP() << "a rank of the Distributed tests, started by them";
  const auto config = train::load_train_config(fs::path(*dir) / "worker.yaml");
  const auto launch = train::read_launch_env();
  train::Trainer trainer(config, {train::process_env("MICRODIT_WORKER_RESUME").has_value(), {},
                                  launch});
  const auto result = trainer.run();
  std::cout << "worker: final step " << result.final_step
            << (result.stopped_by_signal ? " stopped by signal" : "") << std::endl;
  io::TensorMap grads;
  for (const auto& item : trainer.model()->named_parameters()) {
    if (item.value().grad().defined()) grads[item.key()] = item.value().grad();
  }
  io::save_safetensors(fs::path(*dir) / ("grads-rank" + std::to_string(launch.rank) +
                                          ".safetensors"),
                       grads);
}

// A world of `config`'s processes writing into `dir`: each rank's output goes to rank<R>.log.
class World {
 public:
  World(const fs::path& dir, const train::TrainConfig& config, int world, bool resume = false)
      : dir_(dir) {
    fs::create_directories(dir);
    test::write_bytes(dir / "worker.yaml", train::to_yaml(config));
    const int port = test::free_port();
    for (int rank = 0; rank < world; ++rank) {
      Env env{{"RANK", std::to_string(rank)},  {"WORLD_SIZE", std::to_string(world)},
              {"LOCAL_RANK", std::to_string(rank)}, {"MASTER_ADDR", "127.0.0.1"},
              {"MASTER_PORT", std::to_string(port)}, {"MICRODIT_WORKER_DIR", dir.string()},
              {"OMP_NUM_THREADS", "1"}};
      if (resume) env["MICRODIT_WORKER_RESUME"] = "1";
      pids_.push_back(spawn(env, dir / ("rank" + std::to_string(rank) + ".log")));
    }
  }
  ~World() {
    for (const pid_t pid : pids_) {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  }

  pid_t pid(int rank) const { return pids_[rank]; }

  // The exit status of `rank` (-1 when it had not ended after `timeout`: then it is killed).
  int wait(int rank, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pids_[rank], &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pids_[rank] = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Waits for every rank; true when all exited 0 (else the logs are printed).
  bool succeeded() {
    bool ok = true;
    for (int r = 0; r < static_cast<int>(pids_.size()); ++r) {
      if (wait(r) != 0) {
        ok = false;
        ADD_FAILURE() << "rank " << r << " failed:\n" << log(r);
      }
    }
    return ok;
  }

  std::string log(int rank) const {
    return test::read_bytes(dir_ / ("rank" + std::to_string(rank) + ".log"));
  }

 private:
  static pid_t spawn(const Env& extra, const fs::path& log) {
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
    for (const auto& [name, value] : extra) env_text.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& text : env_text) envp.push_back(text.data());
    envp.push_back(nullptr);
    std::string self = fs::read_symlink("/proc/self/exe").string();
    std::string filter = "--gtest_filter=DistributedWorker.Train";
    char* argv[] = {self.data(), filter.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn failed: " + std::to_string(rc));
    return pid;
  }

  fs::path dir_;
  std::vector<pid_t> pids_;
};

train::TrainConfig tiny(const fs::path& run_dir, int64_t steps) {
  return train::parse_train_config(test::tiny_builtin_train_yaml(run_dir, steps));
}

float max_abs_diff(const io::TensorMap& a, const io::TensorMap& b, const std::string& prefix) {
  float worst = 0;
  int64_t compared = 0;
  for (const auto& [name, t] : a) {
    if (!name.starts_with(prefix)) continue;
    const auto it = b.find(name);
    EXPECT_NE(it, b.end()) << name;
    if (it == b.end()) continue;
    worst = std::max(worst, (t.to(at::kFloat) - it->second.to(at::kFloat)).abs().max().item<float>());
    ++compared;
  }
  EXPECT_GT(compared, 0) << "no tensors named " << prefix << "*";
  return worst;
}

// The gradient norms a run logged (metrics.jsonl), by step.
std::map<int64_t, double> logged_grad_norms(const fs::path& run_dir) {
  std::map<int64_t, double> norms;
  for (const auto& record : test::metrics_records(run_dir)) {  // training and samples' records
    if (record.contains("grad_norm")) {
      norms[record.at("step").get<int64_t>()] = record.at("grad_norm").get<double>();
    }
  }
  return norms;
}

io::TensorMap checkpoint_tensors(const fs::path& run_dir, int64_t step) {
  return io::load_safetensors(train::checkpoint_path(run_dir, step));
}

// The reference: one process, the whole batch of 8 in one micro-batch.
struct OneRank {
  io::TensorMap grads_step1;   // gradients of the first step
  io::TensorMap checkpoint5;   // the checkpoint after 5 steps
  std::map<int64_t, double> grad_norms5;  // logged by that run
};

const OneRank& one_rank(const fs::path& root) {
  static const OneRank result = [&] {
    OneRank r;
    {
      train::Trainer trainer(tiny(root / "one-1", 1));
      trainer.run();
      for (const auto& item : trainer.model()->named_parameters()) {
        r.grads_step1[item.key()] = item.value().grad().clone();
      }
    }
    train::Trainer(tiny(root / "one-5", 5)).run();
    r.checkpoint5 = checkpoint_tensors(root / "one-5", 5);
    r.grad_norms5 = logged_grad_norms(root / "one-5");
    return r;
  }();
  return result;
}

constexpr double kLr = 1e-3;

// The GPU machine's build has NCCL but no Gloo headers; CI installs them (scripts/setup.sh).
#define SKIP_WITHOUT_GLOO() \
  if (!train::gloo_available()) GTEST_SKIP() << "built without Gloo (apt install libgloo-dev)"

TEST(Distributed, TwoRanksOfBatch4MatchOneRankOfBatch8) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_ddp");
  const auto& one = one_rank(tmp.path);
  // Small buckets: about 40 all-reduces per step, started from the backward hooks in order.
  auto config1 = tiny(tmp.path / "w1" / "run", 1);
  config1.dist.bucket_mb = 0.01;
  {
    World world(tmp.path / "w1", config1, 2);
    ASSERT_TRUE(world.succeeded());
    for (int rank = 0; rank < 2; ++rank) {
      const auto grads = io::load_safetensors(tmp.path / "w1" /
                                              ("grads-rank" + std::to_string(rank) + ".safetensors"));
      ASSERT_EQ(grads.size(), one.grads_step1.size());
      float scale = 0;
      for (const auto& [name, g] : one.grads_step1) scale = std::max(scale, g.abs().max().item<float>());
      // Two partial sums added instead of one sum: float32 rounding only.
      EXPECT_LE(max_abs_diff(grads, one.grads_step1, ""), 1e-5f * scale) << "rank " << rank;
    }
  }
  auto config5 = tiny(tmp.path / "w5" / "run", 5);
  config5.dist.bucket_mb = 0.01;
  World world(tmp.path / "w5", config5, 2);
  ASSERT_TRUE(world.succeeded());
  const auto two = checkpoint_tensors(tmp.path / "w5" / "run", 5);
  EXPECT_LE(max_abs_diff(two, one.checkpoint5, "model."), 0.1 * kLr * 5);
  // Rank 0 alone logs: the metrics file has the 5 steps once.
  EXPECT_TRUE(fs::exists(tmp.path / "w5" / "run" / "metrics.jsonl"));
}

TEST(Distributed, ZeroStage2MatchesOneRankWeightsAndMoments) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_zero");
  const auto& one = one_rank(tmp.path);
  auto config = tiny(tmp.path / "run", 5);
  config.dist.zero_stage = 2;
  config.dist.bucket_mb = 0.01;  // about 40 buckets, each split between the ranks
  World world(tmp.path, config, 2);
  ASSERT_TRUE(world.succeeded());
  // The full gradients are released once reduce-scattered.
  EXPECT_TRUE(io::load_safetensors(tmp.path / "grads-rank0.safetensors").empty());
  const auto two = checkpoint_tensors(tmp.path / "run", 5);
  EXPECT_LE(max_abs_diff(two, one.checkpoint5, "model."), 0.1 * kLr * 5);
  // The gathered moments are the whole AdamW state, as a single process has it.
  EXPECT_LE(max_abs_diff(two, one.checkpoint5, "optim."), 1e-4);
  // The global gradient norm from the shards' squares, as one process logs it.
  const auto sharded_norms = logged_grad_norms(tmp.path / "run");
  ASSERT_EQ(sharded_norms.size(), 2u);  // steps 1 and 5
  ASSERT_EQ(one.grad_norms5.size(), 2u);
  for (const auto& [step, norm] : one.grad_norms5) {
    ASSERT_TRUE(sharded_norms.contains(step)) << "step " << step;
    EXPECT_NEAR(sharded_norms.at(step), norm, 1e-5 * norm) << "step " << step;
  }
}

TEST(Distributed, ResumeATwoRankCheckpointInOneProcessAndTheReverse) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_resume");
  const auto& one = one_rank(tmp.path);
  // 2 ranks to step 3, then 1 process from there to step 5.
  {
    World world(tmp.path / "a", tiny(tmp.path / "a" / "run", 3), 2);
    ASSERT_TRUE(world.succeeded());
    train::Trainer(tiny(tmp.path / "a" / "run", 5), {/*resume=*/true}).run();
    const auto resumed = checkpoint_tensors(tmp.path / "a" / "run", 5);
    EXPECT_LE(max_abs_diff(resumed, one.checkpoint5, "model."), 0.1 * kLr * 5);
  }
  // 1 process to step 3, then 2 ranks with sharded AdamW state to step 5.
  train::Trainer(tiny(tmp.path / "b" / "run", 3)).run();
  auto config = tiny(tmp.path / "b" / "run", 5);
  config.dist.zero_stage = 2;
  config.dist.bucket_mb = 0.01;
  World world(tmp.path / "b", config, 2, /*resume=*/true);
  ASSERT_TRUE(world.succeeded());
  const auto resumed = checkpoint_tensors(tmp.path / "b" / "run", 5);
  EXPECT_LE(max_abs_diff(resumed, one.checkpoint5, "model."), 0.1 * kLr * 5);
}

std::string last_line_with(const std::string& text, const std::string& start) {
  const auto at = text.rfind(start);
  if (at == std::string::npos) return "(no line starting with '" + start + "')";
  return text.substr(at, text.find('\n', at) - at);
}

// A long run with a checkpoint every 2 steps.
train::TrainConfig long_run(const fs::path& run_dir, double timeout_s) {
  auto config = tiny(run_dir, 1000000);
  config.run.checkpoint_every = 2;
  config.run.keep_checkpoints = 2;
  config.dist.timeout_s = timeout_s;
  return config;
}

void wait_for_checkpoint(const fs::path& run_dir) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!train::latest_checkpoint(run_dir)) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no checkpoint after 60 s";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// A preemption notice (SIGTERM) reaching one rank stops every rank after the same step; rank 0
// writes the checkpoint, and all exit 0.
TEST(Distributed, SigtermOnOneRankStopsEveryRankAtTheSameStepWithACheckpoint) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_sigterm");
  World world(tmp.path, long_run(tmp.path / "run", 600), 2);
  wait_for_checkpoint(tmp.path / "run");
  ::kill(world.pid(1), SIGTERM);
  ASSERT_TRUE(world.succeeded());
  const auto end0 = last_line_with(world.log(0), "worker: final step ");
  const auto end1 = last_line_with(world.log(1), "worker: final step ");
  EXPECT_NE(end0.find("stopped by signal"), std::string::npos) << end0;
  EXPECT_EQ(end0, end1);
  const auto step = std::stoll(end0.substr(std::string("worker: final step ").size()));
  EXPECT_TRUE(fs::exists(train::checkpoint_path(tmp.path / "run", step))) << end0;
}

TEST(Distributed, AKilledRankEndsTheOtherWithAnErrorNamingIt) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_kill");
  World world(tmp.path, long_run(tmp.path / "run", 600), 2);
  wait_for_checkpoint(tmp.path / "run");
  ::kill(world.pid(1), SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  const int status = world.wait(0, std::chrono::seconds(60));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_NE(status, -1) << "rank 0 still running 60 s after rank 1 was killed";
  EXPECT_NE(status, 0);
  EXPECT_LT(seconds, 60);
  EXPECT_NE(world.log(0).find("rank 1 stopped answering"), std::string::npos) << world.log(0);
  // The last complete checkpoint is intact.
  const auto last = train::latest_checkpoint(tmp.path / "run");
  ASSERT_TRUE(last.has_value());
  EXPECT_GE(train::load_checkpoint(*last).state.step, 2);
}

// Rank 0 also hosts the rendezvous store: the survivor cannot ask it and says so.
TEST(Distributed, AKilledRankZeroEndsTheOtherWithAnErrorNamingIt) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_kill0");
  World world(tmp.path, long_run(tmp.path / "run", 600), 2);
  wait_for_checkpoint(tmp.path / "run");
  ::kill(world.pid(0), SIGKILL);
  const int status = world.wait(1, std::chrono::seconds(60));
  EXPECT_NE(status, -1) << "rank 1 still running 60 s after rank 0 was killed";
  EXPECT_NE(status, 0);
  EXPECT_NE(world.log(1).find("its host (rank 0"), std::string::npos) << world.log(1);
}

TEST(Distributed, AHungRankFailsTheOtherAfterTheTimeout) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_hang");
  World world(tmp.path, long_run(tmp.path / "run", 3), 2);
  wait_for_checkpoint(tmp.path / "run");
  ::kill(world.pid(1), SIGSTOP);  // alive, never answering
  const int status = world.wait(0, std::chrono::seconds(60));
  EXPECT_NE(status, -1) << "rank 0 still running 60 s after rank 1 stopped";
  EXPECT_NE(status, 0);
  EXPECT_NE(world.log(0).find("rank 1 stopped answering"), std::string::npos) << world.log(0);
  EXPECT_NE(world.log(0).find("timeout 3 s"), std::string::npos) << world.log(0);
}

// ZeRO-2 in a world of one (Gloo): its step with clipping, fused AdamW or not, equals the step of
// a plain AdamW after clip_and_step (the sharded norm is computed apart, in float64).
TEST(Distributed, ZeroStepClipsAsOneProcess) {
  SKIP_WITHOUT_GLOO();
  train::LaunchEnv env;
  env.master_port = test::free_port();
  train::ProcessGroup group(env, at::Device(at::kCPU), std::chrono::seconds(60));
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused" : "unfused");
    const auto w = at::randn({5, 7}), e = at::randn({2, 3, 4});
    auto p = w.clone().requires_grad_(), pe = e.clone().requires_grad_();
    auto q = w.clone().requires_grad_(), qe = e.clone().requires_grad_();
    train::AdamWSettings settings;
    settings.lr = 0.1;
    settings.moe_lr_scale = 0.5;
    settings.fused = fused;
    train::ShardedAdamW sharded({{"p", p}, {"blocks.0.mlp.w1", pe}}, settings, group);
    auto plain = train::make_adamw({{"q", q}, {"blocks.0.mlp.w1", qe}}, settings);
    for (int i = 0; i < 2; ++i) {
      const auto g = at::randn({5, 7}) * 3, ge = at::randn({2, 3, 4});
      p.mutable_grad() = g.clone();
      pe.mutable_grad() = ge.clone();
      q.mutable_grad() = g.clone();
      qe.mutable_grad() = ge.clone();
      const auto norm = sharded.step(/*max_norm=*/0.25);
      EXPECT_NEAR(norm.item<double>(), train::clip_and_step({q, qe}, *plain, 0.25).item<double>(),
                  1e-5);
    }
    EXPECT_TRUE(at::allclose(p, q, 1e-5, 1e-7));
    EXPECT_TRUE(at::allclose(pe, qe, 1e-5, 1e-7));
    EXPECT_FALSE(at::allclose(p, w, 1e-3, 1e-3));
  }
}

// The validation losses and the sample grid of one checkpoint (the initial weights: lr 0) on the
// official MDS layout, in a world of 2 against a world of 1: the losses within 1e-5 relative (each
// rank evaluates other samples in other micro-batches), the grid the same image (each rank renders
// other prompts, gathered by rank 0).
TEST(Distributed, ValidationLossAndSampleGridDoNotDependOnTheWorldSize) {
  SKIP_WITHOUT_GLOO();
  test::TempDir tmp("dist_val");
  const auto mds = test::source_dir() / "tests" / "data" / "mds" / "merged";
  const auto embeddings = tmp.path / "prompts.safetensors";
  train::save_caption_embeddings(
      embeddings, at::randn({3, 7, 8}, at::make_generator<at::CPUGeneratorImpl>(5)));
  const auto vae = test::source_dir() / "tests" / "data" / "vae" / "tiny";
  auto config = [&](const std::string& name) {
    return train::parse_train_config(R"(
run: {dir: )" + (tmp.path / name / "run").string() + R"(, device: cpu, checkpoint_every: 0,
      eval_every: 1}
)" + test::mds_fixture_model_yaml() + R"(
optim: {steps: 1, batch_size: 4, lr: 0.0, ema: {enabled: true}}
data: {kind: mds, mds_dirs: [)" + mds.string() + R"(], resolution: 256, caption_tokens: 7,
       val_mds_dirs: [)" + mds.string() + R"(], val_samples: 7}
sample: {steps: 2, cfg: 2.0, vae: )" + vae.string() +
                                     ", caption_embeddings: " + embeddings.string() + "}\n");
  };
  train::Trainer(config("one")).run();
  {
    World world(tmp.path / "two", config("two"), 2);
    ASSERT_TRUE(world.succeeded());
  }
  auto losses = [](const fs::path& run) {
    std::map<std::string, double> values;
    for (const auto& record : test::metrics_records(run)) {
      for (const auto& [key, value] : record.items()) {
        if (key.starts_with("val")) values[key] = value.get<double>();
      }
    }
    return values;
  };
  const auto one = losses(tmp.path / "one" / "run"), two = losses(tmp.path / "two" / "run");
  ASSERT_EQ(one.size(), 12u);  // loss and 5 levels, raw and EMA
  ASSERT_EQ(two.size(), one.size());
  for (const auto& [key, value] : one) {
    ASSERT_TRUE(two.count(key)) << key;
    EXPECT_NEAR(two.at(key), value, 1e-5 * std::abs(value)) << key;
  }
  const auto grid = test::read_bytes(tmp.path / "one" / "run" / "samples" / "step-00000001.png");
  EXPECT_FALSE(grid.empty());
  EXPECT_EQ(test::read_bytes(tmp.path / "two" / "run" / "samples" / "step-00000001.png"), grid);
}

// A world of one: collectives leave the data as it is, the bucketed all-reduce gives back the
// gradients, ZeRO-2's step equals a plain AdamW step.
void expect_world_of_one(const at::Device& device, const std::string& backend) {
  train::LaunchEnv env;
  env.master_port = test::free_port();
  train::ProcessGroup group(env, device, std::chrono::seconds(60));
  EXPECT_EQ(group.backend_name(), backend);
  auto x = at::arange(10, at::TensorOptions(device).dtype(at::kFloat));
  const auto before = x.clone();
  group.all_reduce(x, "test all-reduce");
  EXPECT_TRUE(at::equal(x, before));
  // Gradient buckets, filled from the last parameter: b's 128 bytes reach the 104-byte cap, so
  // w starts a second bucket.
  auto w = at::randn({64, 32}, device).requires_grad_(),
       b = at::randn({32}, device).requires_grad_();
  train::GradientBuckets buckets({w, b}, group, /*bucket_mb=*/0.0001);
  EXPECT_EQ(buckets.num_buckets(), 2);
  buckets.arm();
  (at::randn({8, 64}, device).mm(w) + b).square().sum().backward();
  const auto gw = w.grad().clone(), gb = b.grad().clone();
  buckets.finish();
  EXPECT_TRUE(at::allclose(w.grad(), gw));
  EXPECT_TRUE(at::allclose(b.grad(), gb));
  // One bucket: both gradients are views of its summed buffer (nothing copied back).
  w.mutable_grad() = at::Tensor();
  b.mutable_grad() = at::Tensor();
  train::GradientBuckets one_bucket({w, b}, group);
  EXPECT_EQ(one_bucket.num_buckets(), 1);
  one_bucket.arm();
  (at::randn({8, 64}, device).mm(w) + b).square().sum().backward();
  one_bucket.finish();
  EXPECT_TRUE(w.grad().is_alias_of(b.grad()));
  auto p = at::randn({5, 7}, device).requires_grad_();
  auto q = p.detach().clone().requires_grad_();
  train::AdamWSettings settings;
  settings.lr = 0.1;
  train::ShardedAdamW sharded({{"p", p}}, settings, group);
  auto plain = train::make_adamw({{"q", q}}, settings);
  const auto g = at::randn({5, 7}, device);
  p.mutable_grad() = g.clone();
  q.mutable_grad() = g.clone();
  sharded.step(/*max_norm=*/0);
  plain->step();
  EXPECT_TRUE(at::allclose(p, q, 1e-6, 1e-6));
}

TEST(Distributed, GlooWorldOfOne) {
  SKIP_WITHOUT_GLOO();
  expect_world_of_one(at::Device(at::kCPU), "gloo");
}

TEST(Distributed, NcclWorldOfOne_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ASSERT_TRUE(train::nccl_available()) << "a CUDA build without the NCCL process group";
  expect_world_of_one(at::Device(at::kCUDA), "nccl");
}

// Training steps with the bucketed all-reduce: after each step every gradient is a view of its
// summed bucket, which the next step must release (torch::optim's zero_grad refuses views); in a
// world of one the steps train as the same steps without buckets.
void expect_train_steps_on_bucket_views(const at::Device& device) {
  train::LaunchEnv env;
  env.master_port = test::free_port();
  train::ProcessGroup group(env, device, std::chrono::seconds(60));
  auto train = [&](bool bucketed) {
    auto s = test::train_step_setup(device, /*fused_adamw=*/false, /*seed=*/5);
    std::unique_ptr<train::GradientBuckets> buckets;
    if (bucketed) buckets = std::make_unique<train::GradientBuckets>(s.dit->parameters(), group);
    auto step = s.make_step(buckets.get());
    for (int64_t t = 0; t < 3; ++t) step->run([&](int64_t) { return s.input(t); });
    if (bucketed) EXPECT_TRUE(s.dit->parameters().front().grad().is_view());
    return s.dit->parameters();
  };
  const auto plain = train(false), bucketed = train(true);
  ASSERT_EQ(plain.size(), bucketed.size());
  for (std::size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(at::allclose(bucketed[i], plain[i], 1e-5, 1e-6)) << "parameter " << i;
}

TEST(Distributed, GlooTrainStepsOnBucketViews) {
  SKIP_WITHOUT_GLOO();
  expect_train_steps_on_bucket_views(at::Device(at::kCPU));
}

// The bucketed all-reduce (NCCL) captured with the step in a CUDA graph (optim.cuda_graph with
// several processes): the capture takes the collectives, and five graphed steps (two warm-ups,
// the capture, two replays) train as five eager steps without buckets (a world of one: the sums
// are the gradients themselves).
TEST(Distributed, NcclAllReduceCapturedWithTheStep_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!train::cuda_graphs_built()) GTEST_SKIP() << "this build has no CUDA";
  ASSERT_TRUE(train::nccl_available()) << "a CUDA build without the NCCL process group";
  test::NoTF32 no_tf32;
  const at::Device device(at::kCUDA);
  train::LaunchEnv env;
  env.master_port = test::free_port();
  train::ProcessGroup group(env, device, std::chrono::seconds(60));
  auto run = [&](bool captured) {
    auto s = test::train_step_setup(device, /*fused_adamw=*/true, /*seed=*/5);
    std::unique_ptr<train::GradientBuckets> buckets;
    if (captured) buckets = std::make_unique<train::GradientBuckets>(s.dit->parameters(), group);
    s.options.cuda_graph = captured;
    auto step = s.make_step(buckets.get());
    for (int64_t t = 0; t < 5; ++t) step->run([&](int64_t) { return s.input(t); });
    if (captured) EXPECT_TRUE(s.dit->parameters().front().grad().is_view());  // of its bucket
    return s.dit->parameters();
  };
  const auto eager = run(false), graphed = run(true);
  std::vector<at::Tensor> a, b;
  for (std::size_t i = 0; i < eager.size(); ++i) {
    a.push_back(eager[i].detach().flatten());
    b.push_back(graphed[i].detach().flatten());
  }
  // As TrainStep.GraphedStepsTrainAsEagerSteps_CUDA: atomic sums may order differently.
  const auto flat_a = at::cat(a), flat_b = at::cat(b);
  EXPECT_LE(((flat_b - flat_a).norm() / flat_a.norm()).item<double>(), 1e-4);
}

TEST(Distributed, NcclTrainStepsOnBucketViews_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ASSERT_TRUE(train::nccl_available()) << "a CUDA build without the NCCL process group";
  test::NoTF32 no_tf32;
  expect_train_steps_on_bucket_views(at::Device(at::kCUDA));
}

// Waiting on an NCCL collective only orders the GPU stream after it: the host is back while the
// GPU still runs what was queued before (a blocking wait would idle the GPU while the host then
// queues the optimizer step).
TEST(Distributed, NcclWaitLeavesTheHostFree_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ASSERT_TRUE(train::nccl_available()) << "a CUDA build without the NCCL process group";
  train::LaunchEnv env;
  env.master_port = test::free_port();
  const at::Device cuda(at::kCUDA);
  train::ProcessGroup group(env, cuda, std::chrono::seconds(60));
  // NCCL sets up its communicator in the first collective, on the host: not in the timed one.
  auto warm_up = at::zeros({1}, cuda);
  group.all_reduce(warm_up, "warm-up all-reduce");
  const auto x = at::randn({4096, 4096}, cuda);
  torch::cuda::synchronize();
  // Some 0.1 to 0.5 s of float32 matrix products queued ahead of the all-reduce.
  at::Tensor y;
  for (int i = 0; i < 200; ++i) y = at::mm(x, x);
  auto sum = y.sum().reshape({1});
  group.all_reduce(sum, "test all-reduce");
  EXPECT_FALSE(util::device_idle(cuda)) << "the host waited for the GPU";
  torch::cuda::synchronize();
  EXPECT_TRUE(util::device_idle(cuda));
}

}  // namespace
}  // namespace microdit
