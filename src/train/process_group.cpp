#include "microdit/train/process_group.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <thread>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "microdit/util/error_message.h"

// Gloo's headers are not in the PyTorch wheels; Debian's libgloo-dev provides them. The Gloo
// types we touch are held by pointer, so their layout does not depend on Gloo's version
// (docs/distributed.md).
#if __has_include(<gloo/context.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define MICRODIT_HAVE_GLOO 1
#endif
#if defined(MICRODIT_WANT_NCCL) && defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define MICRODIT_HAVE_NCCL 1
#endif

namespace microdit::train {
namespace {

c10::intrusive_ptr<c10d::Store> rendezvous(const LaunchEnv& env,
                                           std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(env.master_port);
  options.isServer = env.rank == 0 && !env.agent_store;
  // Every rank announces itself to the server (TCPStore counts a client only when it has
  // numWorkers and waitWorkers set); the server waits for all of them.
  options.numWorkers = static_cast<std::size_t>(env.world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store =
      c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  if (!env.store_prefix.empty()) {
    store = c10::make_intrusive<c10d::PrefixStore>(env.store_prefix, store);
  }
  // Our keys live apart from anything else a launcher keeps in the store.
  return c10::make_intrusive<c10d::PrefixStore>("microdit", store);
}

#ifdef MICRODIT_HAVE_GLOO
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store,
                                            const LaunchEnv& env,
                                            std::chrono::milliseconds timeout) {
  using Gloo = c10d::ProcessGroupGloo;
  auto options = Gloo::Options::create(timeout);
  // As torch.distributed: GLOO_SOCKET_IFNAME picks the interface; a single-host run (store on
  // the loopback) stays on the loopback; otherwise the address this host's name resolves to.
  if (const auto ifname = process_env("GLOO_SOCKET_IFNAME")) {
    options->devices.push_back(Gloo::createDeviceForInterface(*ifname));
  } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
    options->devices.push_back(Gloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(Gloo::createDefaultDevice());
  }
  return c10::make_intrusive<Gloo>(store, static_cast<int>(env.rank),
                                   static_cast<int>(env.world_size), options);
}
#endif

#ifdef MICRODIT_HAVE_NCCL
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                            const LaunchEnv& env,
                                            std::chrono::milliseconds timeout) {
  // As torch.cuda.set_device(local_rank) before init_process_group: NCCL's communicators and
  // barrier use the current device.
  c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
      ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(env.local_rank)));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(env.rank),
                                                     static_cast<int>(env.world_size), options);
}
#endif

c10::intrusive_ptr<c10d::Backend> make_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                               const LaunchEnv& env, at::Device device,
                                               std::chrono::milliseconds timeout) {
  if (device.is_cuda()) {
#ifdef MICRODIT_HAVE_NCCL
    return make_nccl(store, env, timeout);
#else
    throw DistributedError("this build has no NCCL backend (LibTorch without USE_C10D_NCCL or "
                           "no nccl.h at build time): multi-GPU runs need it");
#endif
  }
#ifdef MICRODIT_HAVE_GLOO
  return make_gloo(store, env, timeout);
#else
  throw DistributedError("this build has no Gloo backend (Gloo's headers were not found at build "
                         "time; on Debian: apt install libgloo-dev): multi-process CPU runs need it");
#endif
}

std::string failed_key(int64_t rank) { return fmt::format("failed/{}", rank); }

}  // namespace

bool gloo_available() {
#ifdef MICRODIT_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef MICRODIT_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

ProcessGroup::ProcessGroup(const LaunchEnv& env, at::Device device,
                           std::chrono::milliseconds timeout)
    : rank_(env.rank), size_(env.world_size), device_(device), timeout_(timeout) {
  try {
    store_ = rendezvous(env, timeout);
    backend_ = make_backend(store_, env, device, timeout);
  } catch (const DistributedError&) {
    throw;
  } catch (const std::exception& e) {
    throw DistributedError(fmt::format("rank {} of {}: rendezvous at {}:{} failed within {} s: {}",
                                       rank_, size_, env.master_addr, env.master_port,
                                       timeout.count() / 1000.0, util::error_message(e)));
  }
}

ProcessGroup::~ProcessGroup() = default;

std::string ProcessGroup::backend_name() const { return backend_->getBackendName(); }

c10::intrusive_ptr<c10d::Work> ProcessGroup::start_all_reduce(at::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  return backend_->allreduce(tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::start_reduce_scatter(at::Tensor& output,
                                                                  at::Tensor& input) {
  return backend_->_reduce_scatter_base(output, input);
}

void ProcessGroup::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    if (device_.is_cuda()) {
      // NCCL: without a timeout, wait() only orders the current stream after the collective and
      // the host goes on queueing; with one, WorkNCCL::wait polls on the host until the GPU has
      // finished it. NCCL's watchdog enforces the process group's timeout instead.
      work->wait();
    } else {
      work->wait(timeout_);  // Gloo's wait blocks anyway; the timeout bounds it
    }
  } catch (const std::exception& e) {
    fail(what, e);
  }
}

void ProcessGroup::all_reduce(at::Tensor& tensor, const std::string& what) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = start_all_reduce(tensor);
  } catch (const std::exception& e) {
    fail(what, e);
  }
  wait(work, what);
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, const std::string& what,
                             int64_t root) {
  c10d::BroadcastOptions options;
  options.rootRank = root;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      backend_->broadcast(one, options)->wait(timeout_);
    }
  } catch (const std::exception& e) {
    fail(what, e);
  }
}

void ProcessGroup::reduce_scatter(at::Tensor& output, at::Tensor& input, const std::string& what) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = backend_->_reduce_scatter_base(output, input);
  } catch (const std::exception& e) {
    fail(what, e);
  }
  wait(work, what);
}

void ProcessGroup::all_gather(at::Tensor& output, at::Tensor& input, const std::string& what) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = backend_->_allgather_base(output, input);
  } catch (const std::exception& e) {
    fail(what, e);
  }
  wait(work, what);
}

void ProcessGroup::barrier(const std::string& what) {
  c10d::BarrierOptions options;
  if (device_.is_cuda()) options.device_ids = {device_.index()};  // NCCL: no guessing
  try {
    backend_->barrier(options)->wait(timeout_);
  } catch (const std::exception& e) {
    fail(what, e);
  }
}

// The ranks that did not mark themselves failed within a few seconds of this one: those that
// died or hang. A store that cannot be reached means its host is gone.
std::string ProcessGroup::silent_ranks() {
  try {
    store_->setTimeout(std::chrono::seconds(2));
    store_->set(failed_key(rank_), std::vector<uint8_t>{1});
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::vector<std::string> silent;
    for (int64_t r = 0; r < size_; ++r) {
      if (r != rank_ && !store_->check({failed_key(r)})) silent.push_back(std::to_string(r));
    }
    if (silent.empty()) return "every rank saw the failure";
    return fmt::format("rank{} {} stopped answering", silent.size() > 1 ? "s" : "",
                       fmt::join(silent, ", "));
  } catch (const std::exception&) {
    return "the rendezvous store is unreachable: its host (rank 0, or the torchrun agent) is gone";
  }
}

void ProcessGroup::fail(const std::string& what, const std::exception& error) {
  const std::string who = silent_ranks();
  throw DistributedError(fmt::format("rank {} of {}: {} failed: {} (timeout {} s). {}", rank_,
                                     size_, what, who, timeout_.count() / 1000.0,
                                     util::error_message(error)));
}

}  // namespace microdit::train
