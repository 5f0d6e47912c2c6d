// Data-parallel training on c10d, in one process: each rank is a thread with
// its own ProcessGroup (Gloo over a localhost TCPStore). Checked against a
// single process: N ranks x batch B train exactly like 1 rank x N*B.
#include "capsnet/data/batch.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/engine/trainer.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace capsnet {
namespace {

// Ranks as threads on the CPU need Gloo; a build without it (a LibTorch wheel
// has no gloo headers) says so through --backend gloo's error instead.
#define REQUIRE_GLOO()                                                             \
  if (!dist::backend_available(dist::Backend::kGloo)) {                            \
    GTEST_SKIP() << "this build has no Gloo (CAPSNET_WITH_GLOO)";                  \
  }

// LibTorch's generator is one per process: ranks (threads here) seed it and
// draw their initial weights one at a time.
std::mutex init_mutex;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

dist::DistOptions rank_of(int64_t rank, int64_t world, int port, double bucket_mb = 8) {
  dist::DistOptions o;
  o.rank = rank;
  o.world_size = world;
  o.master_port = port;
  o.timeout_seconds = 30;
  o.bucket_megabytes = bucket_mb;
  return dist::resolve(o, [](const char*) -> const char* { return nullptr; });
}

/// Runs body(rank, group) on `world` threads, one ProcessGroup each.
void on_ranks(int64_t world, const std::function<void(int64_t, dist::ProcessGroup&)>& body,
              double bucket_mb = 8) {
  const int port = free_port();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        dist::ProcessGroup group(rank_of(r, world, port, bucket_mb), c10::Device(c10::kCPU));
        body(r, group);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

TEST(DistOptions, BackendsOfThisBuildAreKnownAndAMissingOneIsRefused) {
  EXPECT_TRUE(dist::backend_available(dist::Backend::kAuto));
#ifndef CAPSNET_WITH_CUDA
  EXPECT_FALSE(dist::backend_available(dist::Backend::kNccl));
#endif
  if (!dist::backend_available(dist::Backend::kGloo)) {
    dist::DistOptions o;
    o.rank = 0;
    o.world_size = 2;
    o.backend = dist::Backend::kGloo;
    try {
      dist::ProcessGroup group(o, c10::Device(c10::kCPU));
      ADD_FAILURE() << "a build without Gloo made a Gloo group";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("this build has no Gloo"), std::string::npos) << e.what();
    }
  }
}

TEST(DistOptions, TakeTorchrunsVariablesAndFlagsWin) {
  std::map<std::string, std::string> env = {{"RANK", "3"},          {"WORLD_SIZE", "4"},
                                            {"LOCAL_RANK", "1"},    {"MASTER_ADDR", "10.0.0.2"},
                                            {"MASTER_PORT", "1234"}, {"LOCAL_WORLD_SIZE", "2"}};
  auto getenv = [&](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto o = dist::resolve({}, getenv);
  EXPECT_EQ(o.rank, 3);
  EXPECT_EQ(o.world_size, 4);
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.local_world_size, 2);
  EXPECT_EQ(o.master_addr, "10.0.0.2");
  EXPECT_EQ(o.master_port, 1234);
  EXPECT_FALSE(o.agent_store);
  dist::DistOptions flags;
  flags.rank = 0;
  flags.master_port = 4321;
  o = dist::resolve(flags, getenv);
  EXPECT_EQ(o.rank, 0);
  EXPECT_EQ(o.master_port, 4321);

  const auto alone = dist::resolve({}, [](const char*) -> const char* { return nullptr; });
  EXPECT_EQ(alone.rank, 0);
  EXPECT_EQ(alone.world_size, 1);
  EXPECT_FALSE(alone.distributed());
  EXPECT_EQ(alone.master_addr, "127.0.0.1");
  EXPECT_EQ(alone.master_port, 29500);

  env["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  env["TORCHELASTIC_RESTART_COUNT"] = "2";
  o = dist::resolve({}, getenv);
  EXPECT_TRUE(o.agent_store);
  EXPECT_EQ(o.restart_count, 2);

  auto message_for = [&](const std::string& name, const std::string& value) {
    auto bad = env;
    bad[name] = value;
    try {
      dist::resolve({}, [&](const char* n) -> const char* {
        const auto it = bad.find(n);
        return it == bad.end() ? nullptr : it->second.c_str();
      });
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_for("RANK", "two").find("RANK is 'two'"), std::string::npos);
  EXPECT_NE(message_for("RANK", "4").find("outside a world of 4"), std::string::npos);
  EXPECT_NE(message_for("MASTER_PORT", "70000").find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(message_for("WORLD_SIZE", "0").find("WORLD_SIZE"), std::string::npos);
}

TEST(ProcessGroup, SumsBroadcastsAndNamesARankWithOtherOptions) {
  REQUIRE_GLOO();
  on_ranks(3, [](int64_t rank, dist::ProcessGroup& group) {
    EXPECT_EQ(group.rank(), rank);
    EXPECT_EQ(group.world_size(), 3);
    std::vector<double> v = {1.0, static_cast<double>(rank), 0.5};
    group.sum(v);
    EXPECT_EQ(v, (std::vector<double>{3.0, 3.0, 1.5}));

    torch::nn::Linear layer(nullptr);
    {
      std::lock_guard<std::mutex> lock(init_mutex);
      torch::manual_seed(rank); // different weights on every rank
      layer = torch::nn::Linear(4, 3);
    }
    group.attach(layer->parameters());
    group.broadcast_parameters();
    std::vector<double> first = {layer->weight[0][0].item<double>()};
    std::vector<double> total = first;
    group.sum(total);
    EXPECT_EQ(total[0], 3 * first[0]); // every rank holds rank 0's weights

    group.check_same(7, "options"); // the same everywhere: passes
    try {
      group.check_same(rank == 2 ? 8 : 7, "options");
      ADD_FAILURE() << "a different digest on rank 2 passed";
    } catch (const dist::DistributedError& e) {
      EXPECT_NE(std::string(e.what()).find("rank 2 started with other options"),
                std::string::npos)
          << e.what();
    }
  });
}

struct TwoLayers : torch::nn::Module {
  TwoLayers() {
    a = register_module("a", torch::nn::Linear(36, 16));
    b = register_module("b", torch::nn::Linear(16, 6));
  }
  torch::nn::Linear a{nullptr}, b{nullptr};
};

struct TwoLayerTask : Task {
  TwoLayerTask() : net(std::make_shared<TwoLayers>()) {}
  torch::nn::Module& module() override { return *net; }
  TaskOutput forward(const Batch& batch, bool) override {
    auto logits = net->b->forward(at::relu(net->a->forward(batch.images.flatten(1))));
    return {at::cross_entropy_loss(logits, batch.labels), logits};
  }
  std::shared_ptr<TwoLayers> net;
};

template <typename T = TwoLayerTask>
std::unique_ptr<T> seeded(uint64_t seed) {
  std::lock_guard<std::mutex> lock(init_mutex);
  torch::manual_seed(seed);
  return std::make_unique<T>();
}

Dataset noisy_bars(int64_t n) { // class k: a bright row k, plus noise
  std::lock_guard<std::mutex> lock(init_mutex);
  Dataset data;
  torch::manual_seed(5);
  data.images = at::randint(0, 60, {n, 1, 6, 6}, at::kByte);
  data.labels = at::arange(n, at::kLong) % 6;
  for (int64_t i = 0; i < n; ++i) data.images[i][0][i % 6].fill_(255);
  data.num_classes = 6;
  return data;
}

TEST(ProcessGroup, BucketedGradientsAreTheGlobalBatchsWhateverTheShares) {
  REQUIRE_GLOO();
  const DatasetSource source(noisy_bars(10), 0, false);
  const auto batch = source.get(at::arange(10, at::kLong), nullptr);
  // The reference: one process, the whole batch.
  auto single = seeded(3);
  single->forward(batch, true).loss.backward();
  std::vector<at::Tensor> expected;
  for (const auto& p : single->net->parameters()) expected.push_back(p.grad().clone());

  // Three ranks with 6, 4 and 0 of the images; buckets of one parameter or
  // all of them; gradients reduced during backward or after it.
  for (const double bucket_mb : {1e-4, 8.0}) {
    on_ranks(
        3,
        [&](int64_t rank, dist::ProcessGroup& group) {
          auto owned = seeded(3);
          auto& task = *owned;
          group.attach(task.net->parameters());
          const int64_t first[] = {0, 6, 10}, count[] = {6, 4, 0};
          group.begin_gradients(count[rank] / 10.0);
          if (count[rank] > 0) {
            task.forward(batch.narrow(first[rank], count[rank]), true).loss.backward();
          }
          group.finish_gradients();
          const auto params = task.net->parameters();
          for (size_t k = 0; k < params.size(); ++k) {
            EXPECT_TRUE(params[k].grad().allclose(expected[k], 1e-5, 1e-6))
                << "rank " << rank << " parameter " << k << " buckets of " << bucket_mb << " MB";
          }
          const auto stats = group.take_stats();
          EXPECT_EQ(stats.steps, 1);
          EXPECT_EQ(stats.buckets, bucket_mb < 1 ? 4 : 1);
        },
        bucket_mb);
  }
}

TEST(ProcessGroup, NRanksTrainLikeOneProcessAtTheGlobalBatch) {
  REQUIRE_GLOO();
  // Shifted images, a batch that does not divide evenly (7 = 3 + 2 + 2),
  // an epoch that ends in a short batch (45 = 6 * 7 + 3), Adam, lr decay,
  // evaluation: three ranks end with the weights and metrics of one process.
  const DatasetSource train(noisy_bars(45), /*max_shift=*/1, false);
  const DatasetSource test(noisy_bars(23), 0, false);
  auto fit = [&](Replicas* replicas, int64_t rank, int64_t world) {
    auto owned = seeded(11);
    auto& task = *owned;
    torch::optim::Adam adam(task.net->parameters(), torch::optim::AdamOptions(0.02));
    const ShardedSampler sampler(train.size(), 7, /*seed=*/9, rank, world);
    auto* group = dynamic_cast<dist::ProcessGroup*>(replicas);
    if (group) group->attach(task.net->parameters());
    Trainer trainer(task, train, sampler, adam, replicas);
    trainer.schedule = {0.02, 0.8};
    trainer.evaluation = {&test, 5};
    TrainingState state;
    const auto result = trainer.fit(state, /*epochs=*/3);
    std::vector<at::Tensor> weights;
    for (const auto& p : task.net->parameters()) weights.push_back(p.detach().clone());
    return std::make_tuple(weights, result.last_eval, state);
  };
  const auto [weights, eval, state] = fit(nullptr, 0, 1);
  EXPECT_GT((seeded(11)->net->a->weight - weights[0]).abs().max().item<double>(), 0.05);
  EXPECT_EQ(state.global_step, 3 * 7);
  on_ranks(3, [&](int64_t rank, dist::ProcessGroup& group) {
    const auto [w, e, s] = fit(&group, rank, 3);
    for (size_t k = 0; k < w.size(); ++k) {
      EXPECT_TRUE(w[k].allclose(weights[k], 1e-4, 1e-5))
          << "rank " << rank << " parameter " << k << ": max difference "
          << (w[k] - weights[k]).abs().max().item<double>();
    }
    EXPECT_EQ(e.correct, eval.correct);
    EXPECT_EQ(e.total, eval.total);
    EXPECT_NEAR(e.loss, eval.loss, 1e-4);
    EXPECT_EQ(e.confusion, eval.confusion);
    EXPECT_TRUE(e.scores.allclose(eval.scores, 1e-4, 1e-5)); // every rank has every score
    EXPECT_EQ(s.global_step, state.global_step);
    EXPECT_NEAR(s.best_accuracy, state.best_accuracy, 1e-12);
  });
}

TEST(ProcessGroup, AStopOnOneRankStopsEveryRankAtTheSameStep) {
  REQUIRE_GLOO();
  const DatasetSource train(noisy_bars(40), 0, false);
  on_ranks(2, [&](int64_t rank, dist::ProcessGroup& group) {
    auto owned = seeded(1);
    auto& task = *owned;
    torch::optim::Adam adam(task.net->parameters(), torch::optim::AdamOptions(0.01));
    const ShardedSampler sampler(train.size(), 4, 2, rank, 2);
    group.attach(task.net->parameters());
    Trainer trainer(task, train, sampler, adam, &group);
    int64_t saves = 0;
    trainer.checkpoints = {"last", "", [&](const std::string&, const TrainingState&) { ++saves; }};
    if (rank == 1) trainer.max_steps = 3; // only rank 1 wants to stop
    TrainingState state;
    const auto result = trainer.fit(state, 2);
    EXPECT_TRUE(result.interrupted);
    EXPECT_EQ(state.global_step, 3) << "rank " << rank;
    EXPECT_EQ(saves, 1);
  });
}

TEST(ProcessGroup, ANonFiniteLossOnOneRankStopsEveryRankBeforeTheUpdate) {
  REQUIRE_GLOO();
  struct NaNOnRankOne : TwoLayerTask {
    int64_t rank = 0;
    TaskOutput forward(const Batch& batch, bool training) override {
      auto out = TwoLayerTask::forward(batch, training);
      if (rank == 1) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
      return out;
    }
  };
  const DatasetSource train(noisy_bars(16), 0, false);
  on_ranks(2, [&](int64_t rank, dist::ProcessGroup& group) {
    auto owned = seeded<NaNOnRankOne>(1);
    auto& task = *owned;
    task.rank = rank;
    torch::optim::Adam adam(task.net->parameters(), torch::optim::AdamOptions(0.01));
    const ShardedSampler sampler(train.size(), 4, 2, rank, 2);
    group.attach(task.net->parameters());
    const auto before = task.net->a->weight.detach().clone();
    Trainer trainer(task, train, sampler, adam, &group);
    TrainingState state;
    try {
      trainer.fit(state, 1);
      ADD_FAILURE() << "rank " << rank << " trained on";
    } catch (const TrainingError& e) {
      EXPECT_NE(std::string(e.what()).find(rank == 1 ? "non-finite loss (nan)"
                                                      : "non-finite loss on another rank"),
                std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(task.net->a->weight.equal(before));
  });
}

} // namespace
} // namespace capsnet
