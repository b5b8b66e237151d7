// The process group of a multi-process run: PyTorch's c10d backends do the communication (Gloo
// between CPU processes, NCCL between GPUs) after a TCPStore rendezvous at the launcher's
// MASTER_ADDR:MASTER_PORT. This class holds the store and the backend and offers the collectives
// the trainer needs. Gloo's collectives are waited on the host with the run's timeout; NCCL's
// only order the current CUDA stream after them (the host goes on queueing, as in PyTorch), and
// NCCL's watchdog ends the process when one outlasts the timeout.
//
// A collective that fails (a peer process died, or did not arrive within the timeout) is
// rethrown as DistributedError naming the operation and the ranks that stopped answering: the
// surviving ranks mark themselves in the store, wait a moment, and name every rank that did not.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "microdit/train/launch_env.h"

namespace c10d {
class Backend;
class Store;
class Work;
}  // namespace c10d

namespace microdit::train {

struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Whether this build has the Gloo backend (multi-process CPU runs) / the NCCL backend.
bool gloo_available();
bool nccl_available();

class ProcessGroup {
 public:
  // Rendezvous and backend for `env` (a world of more than one); NCCL when `device` is CUDA,
  // Gloo otherwise. Throws DistributedError when this build lacks the backend (the CPU wheel has
  // Gloo; Gloo's headers come from Debian's libgloo-dev) or the rendezvous times out.
  ProcessGroup(const LaunchEnv& env, at::Device device, std::chrono::milliseconds timeout);
  ~ProcessGroup();

  int64_t rank() const { return rank_; }
  int64_t size() const { return size_; }
  std::string backend_name() const;

  // Started, not waited: the returned Work is finished by wait().
  c10::intrusive_ptr<c10d::Work> start_all_reduce(at::Tensor& tensor);  // sum, in place
  // reduce_scatter() started, not waited.
  c10::intrusive_ptr<c10d::Work> start_reduce_scatter(at::Tensor& output, at::Tensor& input);
  // Gloo: blocks until done; NCCL: the current stream waits for it, the host does not.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);

  void all_reduce(at::Tensor& tensor, const std::string& what);  // sum, in place
  // Every rank's `tensors` become rank `root`'s.
  void broadcast(std::vector<at::Tensor>& tensors, const std::string& what, int64_t root = 0);
  // input (size * n) summed over ranks; rank r keeps elements [r n, (r + 1) n) in output (n).
  void reduce_scatter(at::Tensor& output, at::Tensor& input, const std::string& what);
  // output (size * n) = every rank's input (n), in rank order.
  void all_gather(at::Tensor& output, at::Tensor& input, const std::string& what);
  void barrier(const std::string& what);

 private:
  [[noreturn]] void fail(const std::string& what, const std::exception& error);
  std::string silent_ranks();

  int64_t rank_ = 0, size_ = 1;
  at::Device device_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
};

}  // namespace microdit::train
