// The backends this build has: CMake defines CAPSNET_WITH_GLOO when gloo's
// headers are found (or -DCAPSNET_WITH_GLOO=ON) and CAPSNET_WITH_NCCL when
// nccl.h is, in CUDA builds. ProcessGroupGloo.hpp and ProcessGroupNCCL.hpp
// declare their classes only with USE_C10D_GLOO and USE_C10D_NCCL (LibTorch's
// own build defines them; its CMake config does not pass them on): so in 1.13
// and in 2.x (torch/csrc/distributed/c10d/ProcessGroupGloo.hpp,
// ProcessGroupNCCL.hpp: `#ifdef USE_C10D_GLOO` / `#ifdef USE_C10D_NCCL` around
// the whole header). CMake defines those beside ours.
#if defined(CAPSNET_WITH_GLOO) && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO 1
#endif
#if defined(CAPSNET_WITH_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL 1
#endif
#include "capsnet/dist/process_group.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR < 2
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#if defined(CAPSNET_WITH_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(CAPSNET_WITH_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

namespace capsnet::dist {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// LibTorch 1.13's groups derive from c10d::ProcessGroup, 2.x's from c10d::Backend
// (torch/csrc/distributed/c10d/ProcessGroupGloo.hpp at v2.x: `class ProcessGroupGloo
// : public Backend`, and it includes Backend.hpp, no longer ProcessGroup.hpp).
#if TORCH_VERSION_MAJOR >= 2
using Group = c10d::Backend;
#else
using Group = c10d::ProcessGroup;
#endif

int64_t parse_int(const std::string& text, const std::string& name, int64_t low, int64_t high) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < low || value > high) {
    throw std::invalid_argument(name + " is '" + text + "'; expected an integer in [" +
                                std::to_string(low) + ", " + std::to_string(high) + "]");
  }
  return value;
}

// This machine's address on the route to `host` (the kernel's choice for a
// datagram socket connected there; nothing is sent), or "" when it has none.
// Gloo's default device takes the address of the machine's hostname instead,
// which is 127.0.1.1 on Debian or an interface the other machines may not
// reach (a second network, a network namespace).
[[maybe_unused]] std::string address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || !found) return "";
  std::string address;
  const int fd = ::socket(found->ai_family, SOCK_DGRAM, 0);
  sockaddr_storage local{};
  socklen_t size = sizeof local;
  char text[INET6_ADDRSTRLEN] = {};
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) == 0) {
    const void* raw = local.ss_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
    if (::inet_ntop(local.ss_family, raw, text, sizeof text)) address = text;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  return address;
}

std::string to_text(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }
std::vector<uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }

milliseconds to_ms(double seconds) {
  return milliseconds(static_cast<int64_t>(std::max(seconds, 0.001) * 1000));
}

} // namespace

DistOptions resolve(DistOptions o, const std::function<const char*(const char*)>& getenv_fn) {
  auto env = [&](const char* name) -> std::string {
    const char* v = getenv_fn ? getenv_fn(name) : std::getenv(name);
    return v ? v : "";
  };
  auto from_env = [&](int64_t& field, const char* name, int64_t low, int64_t high,
                      int64_t fallback) {
    if (field >= 0) return;
    const auto text = env(name);
    field = text.empty() ? fallback : parse_int(text, name, low, high);
  };
  from_env(o.world_size, "WORLD_SIZE", 1, 1 << 20, 1);
  from_env(o.rank, "RANK", 0, 1 << 20, 0);
  from_env(o.local_rank, "LOCAL_RANK", 0, 1 << 20, o.rank);
  from_env(o.local_world_size, "LOCAL_WORLD_SIZE", 1, 1 << 20, o.world_size);
  from_env(o.master_port, "MASTER_PORT", 1, 65535, 29500);
  if (o.master_addr.empty()) o.master_addr = env("MASTER_ADDR");
  if (o.master_addr.empty()) o.master_addr = "127.0.0.1";
  o.agent_store = env("TORCHELASTIC_USE_AGENT_STORE") == "True";
  const auto restarts = env("TORCHELASTIC_RESTART_COUNT");
  o.restart_count =
      restarts.empty() ? 0 : parse_int(restarts, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 20);
  if (o.world_size < 1) {
    throw std::invalid_argument("--world-size must be at least 1, got " +
                                std::to_string(o.world_size));
  }
  if (o.rank >= o.world_size) {
    throw std::invalid_argument("rank " + std::to_string(o.rank) + " is outside a world of " +
                                std::to_string(o.world_size) +
                                " processes (RANK or --rank must be below WORLD_SIZE)");
  }
  if (o.master_port < 1 || o.master_port > 65535) {
    throw std::invalid_argument("--master-port must be in [1, 65535], got " +
                                std::to_string(o.master_port));
  }
  if (!(o.timeout_seconds > 0 && o.timeout_seconds <= 86400)) {
    throw std::invalid_argument("--dist-timeout must be in (0, 86400] seconds");
  }
  if (!(o.bucket_megabytes > 0 && o.bucket_megabytes <= 4096)) {
    throw std::invalid_argument("--grad-bucket-mb must be in (0, 4096]");
  }
  return o;
}

// One bucket of gradients, reduced by one all-reduce.
struct Bucket {
  at::Tensor flat;                // the gradients, concatenated
  std::vector<size_t> params;     // indices into Impl::params
  std::vector<int64_t> offsets;   // of each parameter in `flat`
  size_t pending = 0;             // parameters not yet reported this step
  c10::intrusive_ptr<c10d::Work> work;
};

struct ProcessGroup::Impl {
  DistOptions options;
  c10::Device device;
  Backend backend = Backend::kGloo;
  c10::intrusive_ptr<c10d::Store> store; // the rendezvous store (prefixed)
  c10::intrusive_ptr<Group> group;
  bool broken = false;

  // Gradients.
  std::vector<at::Tensor> params;
  std::vector<std::pair<size_t, int64_t>> where; // parameter -> (bucket, offset)
  std::vector<bool> reported;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  bool active = false;
  double share = 1.0;
  CommStats stats;
  double alone_seconds = 0;

  // Heartbeat: a thread with its own store client says every half second
  // "<beats> <collectives>", so that a failing collective can tell a dead
  // rank from a slow one.
  std::atomic<int64_t> collectives{0};
  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_wake;
  bool heartbeat_stop = false;

  Impl(const DistOptions& o, c10::Device d) : options(o), device(d) {}

  std::string where_master() const {
    return options.master_addr + ":" + std::to_string(options.master_port);
  }

  // A store client; `server` only for rank 0's first one (unless torchrun's
  // agent hosts the store). `join`: this rank's first connection, which
  // counts it in (the server waits until every rank has).
  c10::intrusive_ptr<c10d::Store> connect(bool server, milliseconds timeout,
                                          bool join = false) const {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(options.master_port);
    so.isServer = server;
    so.numWorkers = static_cast<size_t>(options.world_size);
    so.waitWorkers = join && !options.agent_store;
    so.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> s = c10::make_intrusive<c10d::TCPStore>(options.master_addr, so);
    const std::string prefix = options.agent_store
                                   ? "/worker/attempt_" + std::to_string(options.restart_count) + "/"
                                   : "";
    return c10::make_intrusive<c10d::PrefixStore>(prefix + "capsnet", s);
  }

  // This rank's first connection. A rank that a launcher restarted (launch
  // --max-restarts on another machine) may reach the store of the group that
  // failed, whose rank 0 has not noticed yet: that store already counts the
  // whole world in, so the rank leaves it and tries again until a new rank 0
  // hosts a new one, for twice the timeout (the old rank 0 notices within
  // one; its launcher then starts the new one).
  c10::intrusive_ptr<c10d::Store> join(milliseconds timeout) const {
    if (options.agent_store) return connect(false, timeout, /*join=*/true);
    if (options.rank == 0) {
      auto store = connect(true, timeout, /*join=*/true); // returns once every rank connected
      store->add("joined", 1);
      return store;
    }
    const auto deadline = std::chrono::steady_clock::now() + 2 * timeout;
    bool stale = false;
    while (true) {
      try {
        auto store = connect(false, timeout, /*join=*/true);
        if (store->add("joined", 1) <= options.world_size) return store;
        stale = true;
      } catch (const std::exception&) {
        if (std::chrono::steady_clock::now() >= deadline || !stale) throw;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw DistributedError(
            "rank " + std::to_string(options.rank) + ": the rendezvous store at " +
            where_master() + " belongs to a group that is already running (all " +
            std::to_string(options.world_size) +
            " ranks joined it), and no new one appeared within twice --dist-timeout; "
            "start every rank of a job together, or restart the whole group");
      }
      std::this_thread::sleep_for(milliseconds(500));
    }
  }

  // How long a failing rank watches the others' heartbeats (beats come every
  // 500 ms). Collectives time out this much before --dist-timeout, so that a
  // stalled rank is named within the timeout.
  milliseconds diagnosis_window() const {
    return std::min(milliseconds(2500), to_ms(options.timeout_seconds / 4));
  }

  std::string key(const char* what, int64_t r) const {
    return std::string(what) + "/" + std::to_string(r);
  }

  void beat() {
    c10::intrusive_ptr<c10d::Store> client;
    try {
      client = connect(false, milliseconds(5000));
    } catch (const std::exception&) {
      return;
    }
    int64_t beats = 0;
    std::unique_lock<std::mutex> lock(heartbeat_mutex);
    while (!heartbeat_stop) {
      lock.unlock();
      try {
        client->set(key("heartbeat", options.rank),
                    to_bytes(std::to_string(++beats) + " " + std::to_string(collectives.load())));
      } catch (const std::exception&) {
        return; // the store is gone: rank 0 ended or died; the collectives will say which
      }
      lock.lock();
      heartbeat_wake.wait_for(lock, milliseconds(500), [&] { return heartbeat_stop; });
    }
  }

  // Who made a collective fail: a rank that reported why, a rank without a
  // heartbeat, or the rank that is behind.
  std::string culprit() const {
    c10::intrusive_ptr<c10d::Store> s;
    try {
      s = connect(false, milliseconds(3000));
    } catch (const std::exception&) {
      return options.agent_store
                 ? "torchrun's agent, which hosts the rendezvous store at " + where_master() +
                       ", does not answer"
                 : "rank 0 is gone: the rendezvous store it hosts at " + where_master() +
                       " does not answer (its process died, froze or its machine is unreachable)";
    }
    const int64_t world = options.world_size;
    try {
      for (int64_t r = 0; r < world; ++r) {
        if (r != options.rank && s->check({key("failed", r)})) {
          const auto reason = to_text(s->get(key("failed", r)));
          s->set(key("seen", options.rank), to_bytes("1"));
          return "rank " + std::to_string(r) + " stopped: " + reason;
        }
      }
      auto read = [&] {
        std::vector<std::pair<int64_t, int64_t>> seen(world, {-1, -1});
        for (int64_t r = 0; r < world; ++r) {
          if (r == options.rank || !s->check({key("heartbeat", r)})) continue;
          std::istringstream in(to_text(s->get(key("heartbeat", r))));
          in >> seen[r].first >> seen[r].second;
        }
        return seen;
      };
      const auto before = read();
      std::this_thread::sleep_for(diagnosis_window());
      const auto after = read();
      std::string dead;
      for (int64_t r = 0; r < world; ++r) {
        if (r != options.rank && after[r].first == before[r].first) {
          dead += (dead.empty() ? "" : ", ") + std::to_string(r);
        }
      }
      if (!dead.empty()) {
        return "rank " + dead + " stopped responding: no heartbeat for " +
               std::to_string(diagnosis_window().count()) + " ms (killed, crashed or frozen)";
      }
      int64_t slowest = -1;
      for (int64_t r = 0; r < world; ++r) {
        if (r != options.rank && (slowest < 0 || after[r].second < after[slowest].second)) {
          slowest = r;
        }
      }
      if (slowest >= 0 && after[slowest].second < collectives.load()) {
        return "rank " + std::to_string(slowest) + " is stalled: it is alive but has joined " +
               std::to_string(after[slowest].second) + " collectives to this rank's " +
               std::to_string(collectives.load());
      }
    } catch (const std::exception&) {
      return "rank 0 is gone: the rendezvous store it hosts at " + where_master() +
             " stopped answering";
    }
    return "every rank is alive and none reported a failure; the network between them may "
           "have failed";
  }

  [[noreturn]] void fail(const std::string& what, const std::string& detail) {
    broken = true;
    std::string first_line = detail.substr(0, detail.find('\n'));
    throw DistributedError("rank " + std::to_string(options.rank) + ": " + what + " failed (" +
                           first_line + "): " + culprit());
  }

  void wait(c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      fail(what, e.what());
    }
  }

  c10::intrusive_ptr<c10d::Work> allreduce(at::Tensor& tensor) {
    std::vector<at::Tensor> tensors{tensor};
    ++collectives;
    return group->allreduce(tensors);
  }

  void launch(Bucket& bucket) { bucket.work = allreduce(bucket.flat); }

  // Buckets are reduced in their order on every rank (c10d matches
  // collectives by their sequence), whatever order backward fills them in.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      launch(buckets[next_launch++]);
    }
  }

  void on_gradient(size_t index, const at::Tensor& grad) {
    if (!active) return;
    auto& bucket = buckets[where[index].first];
    auto slot = bucket.flat.narrow(0, where[index].second, params[index].numel());
    if (reported[index]) { // a second gradient for the same parameter this step
      slot.add_(grad.reshape(-1), share);
      return;
    }
    at::mul_out(slot, grad.reshape(-1), share);
    reported[index] = true;
    --bucket.pending;
    if (options.overlap) launch_ready();
  }
};

ProcessGroup::ProcessGroup(const DistOptions& options, c10::Device device)
    : impl_(std::make_unique<Impl>(options, device)) {
  auto& m = *impl_;
  m.backend = options.backend;
  if (m.backend == Backend::kAuto) m.backend = device.is_cuda() ? Backend::kNccl : Backend::kGloo;
  if (m.backend == Backend::kNccl && !device.is_cuda()) {
    throw std::invalid_argument("--backend nccl needs a CUDA device (--device cuda); use gloo "
                                "on the CPU");
  }
#if !defined(CAPSNET_WITH_GLOO)
  if (m.backend == Backend::kGloo) {
    throw std::invalid_argument("this build has no Gloo (gloo's headers were not found when it "
                                "was built); use --backend nccl on a CUDA device");
  }
#endif
#if !defined(CAPSNET_WITH_NCCL)
  if (m.backend == Backend::kNccl) {
    throw std::invalid_argument("this build has no NCCL (built without CUDA, or nccl.h was not "
                                "found); use --backend gloo");
  }
#endif
  const auto timeout = to_ms(options.timeout_seconds);
  try {
    m.store = m.join(timeout);
  } catch (const DistributedError&) {
    throw;
  } catch (const std::exception& e) {
    const std::string detail = e.what();
    throw DistributedError(
        "rank " + std::to_string(options.rank) + " of " + std::to_string(options.world_size) +
        ": rendezvous at " + m.where_master() + " failed within " +
        std::to_string(static_cast<int64_t>(options.timeout_seconds)) + " s (" +
        detail.substr(0, detail.find('\n')) +
        "). Start every rank with the same MASTER_ADDR and MASTER_PORT (rank 0's address); "
        "if the port is taken, choose another --master-port");
  }
  try {
    [[maybe_unused]] auto group_store = c10::make_intrusive<c10d::PrefixStore>("group", m.store);
    if (m.backend == Backend::kGloo) {
#if defined(CAPSNET_WITH_GLOO)
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout - m.diagnosis_window());
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (options.master_addr == "127.0.0.1" || options.master_addr == "localhost") {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else if (const auto local = address_towards(options.master_addr); !local.empty()) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(local));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      m.group = c10::make_intrusive<c10d::ProcessGroupGloo>(group_store, options.rank,
                                                            options.world_size, opts);
#endif
    } else {
#if defined(CAPSNET_WITH_NCCL)
      // 2.x still takes the store, rank, size and Options (whose timeout is
      // Backend::Options'): torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp.
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout - m.diagnosis_window();
      m.group = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_store, options.rank,
                                                            options.world_size, opts);
#endif
    }
  } catch (const std::exception& e) {
    const std::string detail = e.what();
    throw DistributedError("rank " + std::to_string(options.rank) + ": joining the " +
                           enum_name(m.backend) + " group failed (" +
                           detail.substr(0, detail.find('\n')) + ")");
  }
  m.heartbeat = std::thread([&m] { m.beat(); });
}

ProcessGroup::~ProcessGroup() {
  auto& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.heartbeat_mutex);
    m.heartbeat_stop = true;
  }
  m.heartbeat_wake.notify_all();
  if (m.broken) {
    // Pending collectives may wait out their timeout: leave them to the
    // process's exit instead of joining them here.
    if (m.heartbeat.joinable()) m.heartbeat.detach();
    m.group.release();
    m.store.release();
    return;
  }
  if (m.heartbeat.joinable()) m.heartbeat.join();
}

bool backend_available(Backend backend) {
  switch (backend) {
    case Backend::kGloo:
#if defined(CAPSNET_WITH_GLOO)
      return true;
#else
      return false;
#endif
    case Backend::kNccl:
#if defined(CAPSNET_WITH_NCCL)
      return true;
#else
      return false;
#endif
    case Backend::kAuto:
      return true;
  }
  return false;
}

int64_t ProcessGroup::rank() const { return impl_->options.rank; }
int64_t ProcessGroup::world_size() const { return impl_->options.world_size; }
Backend ProcessGroup::backend() const { return impl_->backend; }

void ProcessGroup::sum(std::vector<double>& values) {
  auto& m = *impl_;
  auto t = at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(m.device);
  auto work = m.allreduce(t);
  m.wait(work, "an all-reduce of the step's metrics");
  t = t.cpu();
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
}

namespace {

// The sum over ranks as an autograd op: the gradient of every rank's input
// is the sum of the ranks' output gradients (the backward of a broadcast sum).
struct SumOverRanks : torch::autograd::Function<SumOverRanks> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            ProcessGroup* group) {
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return group->sum_tensor(input);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    return {group->sum_tensor(grads[0]), at::Tensor()};
  }
};

} // namespace

at::Tensor ProcessGroup::sum_tensor(const at::Tensor& tensor) {
  auto& m = *impl_;
  auto t = tensor.detach().to(m.device).contiguous().clone();
  auto work = m.allreduce(t);
  m.wait(work, "an all-reduce of batch statistics");
  return t.to(tensor.device());
}

DifferentiableSum ProcessGroup::differentiable_sum() {
  return [this](const at::Tensor& tensor) { return SumOverRanks::apply(tensor, this); };
}

void ProcessGroup::attach(const std::vector<at::Tensor>& parameters) {
  auto& m = *impl_;
  TORCH_CHECK(m.params.empty(), "ProcessGroup::attach: parameters already attached");
  m.params = parameters;
  m.where.resize(parameters.size());
  m.reported.assign(parameters.size(), false);
  const auto cap = static_cast<int64_t>(m.options.bucket_megabytes * 1024 * 1024 / 4);
  // Backward produces gradients roughly from the last layer to the first.
  std::vector<int64_t> sizes; // floats per bucket
  for (size_t k = parameters.size(); k-- > 0;) {
    const int64_t n = parameters[k].numel();
    if (m.buckets.empty() || (sizes.back() > 0 && sizes.back() + n > cap)) {
      m.buckets.emplace_back();
      sizes.push_back(0);
    }
    auto& b = m.buckets.back();
    m.where[k] = {m.buckets.size() - 1, sizes.back()};
    b.params.push_back(k);
    b.offsets.push_back(sizes.back());
    sizes.back() += n;
  }
  double megabytes = 0;
  for (size_t i = 0; i < m.buckets.size(); ++i) {
    m.buckets[i].flat =
        at::zeros({sizes[i]}, at::TensorOptions().dtype(at::kFloat).device(m.device));
    megabytes += sizes[i] * 4.0 / (1024 * 1024);
  }
  for (size_t k = 0; k < parameters.size(); ++k) {
    Impl* impl = &m;
    m.params[k].register_hook([impl, k](const at::Tensor& grad) { impl->on_gradient(k, grad); });
  }
  // What the gradients' all-reduce costs with nothing else running: the
  // measure of how much of it backward hides.
  std::vector<double> times;
  for (int trial = 0; trial < 3; ++trial) {
    const auto start = Clock::now();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& b : m.buckets) works.push_back(m.allreduce(b.flat));
    for (auto& w : works) m.wait(w, "an all-reduce of the gradients");
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  m.alone_seconds = times[1];
  m.stats.buckets = static_cast<int64_t>(m.buckets.size());
  m.stats.megabytes = megabytes;
}

void ProcessGroup::begin_gradients(double share) {
  auto& m = *impl_;
  TORCH_CHECK(!m.params.empty(), "ProcessGroup: attach() the trained parameters before the "
                                 "first step, or the gradients are not averaged");
  m.share = share;
  m.next_launch = 0;
  std::fill(m.reported.begin(), m.reported.end(), false);
  for (auto& b : m.buckets) b.pending = b.params.size();
  m.active = true;
}

void ProcessGroup::finish_gradients() {
  auto& m = *impl_;
  const auto start = Clock::now();
  m.active = false;
  // Parameters without a gradient on this rank (no images, or unused)
  // contribute zeros; their buckets go now, still in order.
  for (auto& b : m.buckets) {
    for (size_t j = 0; j < b.params.size(); ++j) {
      const auto k = b.params[j];
      if (m.reported[k]) continue;
      b.flat.narrow(0, b.offsets[j], m.params[k].numel()).zero_();
      m.reported[k] = true;
      --b.pending;
    }
  }
  m.launch_ready();
  torch::NoGradGuard no_grad;
  for (auto& b : m.buckets) {
    m.wait(b.work, "an all-reduce of the gradients");
    for (size_t j = 0; j < b.params.size(); ++j) {
      auto& p = m.params[b.params[j]];
      const auto reduced = b.flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(reduced);
      } else {
        p.mutable_grad() = reduced.clone();
      }
    }
  }
  m.stats.exposed_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  ++m.stats.steps;
}

void ProcessGroup::broadcast_parameters() {
  auto& m = *impl_;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> flat;
  for (const auto& p : m.params) flat.push_back(p.detach().reshape(-1));
  std::vector<at::Tensor> all{at::cat(flat)};
  ++m.collectives;
  auto work = m.group->broadcast(all);
  m.wait(work, "the broadcast of rank 0's parameters");
  int64_t offset = 0;
  for (auto& p : m.params) {
    p.detach().copy_(all[0].narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
}

void ProcessGroup::check_same(uint32_t digest, const std::string& what) {
  std::vector<double> digests(impl_->options.world_size, 0.0);
  digests[impl_->options.rank] = digest;
  sum(digests);
  std::string differ;
  for (size_t r = 1; r < digests.size(); ++r) {
    if (digests[r] != digests[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differ.empty()) {
    throw DistributedError("rank " + differ + " started with other " + what +
                           " than rank 0; give every rank the same command line and data");
  }
}

void ProcessGroup::report_failure(const std::string& reason) noexcept {
  auto& m = *impl_;
  try {
    m.store->set(m.key("failed", m.options.rank), to_bytes(reason));
    // Leaving the group makes the others' collectives fail now rather than
    // at their timeout; they then read the reason from the store.
    m.group.reset();
    if (m.options.rank == 0 && !m.options.agent_store) {
      // This process hosts the store: keep it up until every rank has read
      // why (or 5 s passed).
      std::vector<std::string> seen;
      for (int64_t r = 1; r < m.options.world_size; ++r) seen.push_back(m.key("seen", r));
      const auto deadline = Clock::now() + milliseconds(5000);
      while (Clock::now() < deadline && !m.store->check(seen)) {
        std::this_thread::sleep_for(milliseconds(50));
      }
    }
  } catch (...) {
    // Best effort: the others then find this rank by its missing heartbeat.
  }
}

CommStats ProcessGroup::take_stats() {
  auto stats = impl_->stats;
  stats.alone_seconds = impl_->alone_seconds;
  impl_->stats.steps = 0;
  impl_->stats.exposed_seconds = 0;
  return stats;
}

std::vector<std::pair<std::string, double>> ProcessGroup::take_epoch_stats() {
  const auto s = take_stats();
  if (s.steps == 0) return {};
  const double exposed = s.exposed_seconds / s.steps;
  const double hidden = s.alone_seconds > 0 ? std::max(0.0, 1.0 - exposed / s.alone_seconds) : 0.0;
  return {{"allreduce_exposed_seconds", exposed},
          {"allreduce_alone_seconds", s.alone_seconds},
          {"allreduce_hidden_fraction", hidden},
          {"gradient_megabytes", s.megabytes}};
}

} // namespace capsnet::dist
