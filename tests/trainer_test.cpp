// The trainer's parts: batches and samplers, the decoder with several masked
// capsules, metrics for several labels, the step and its gradient hook, the
// Trainer with a task of a library user's own, and the shared helpers
// (atomic files, enum names, options JSON, the data set registry).
#include "capsnet/data/batch.h"
#include "capsnet/data/registry.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/registry/models.h"
#include "capsnet/engine/adam.h"
#include "capsnet/engine/step.h"
#include "capsnet/registry/task.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/io/enum_names.h"
#include "test_util.h"

#include <ATen/record_function.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>

namespace capsnet {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t entries_in(const std::string& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(AtomicFile, WritesWholeFilesAndKeepsTheOldOneWhenAWriterFails) {
  const auto dir = testing::temp_dir("atomic");
  const auto path = dir + "/out.txt";
  write_file_atomically(path, std::string("first"));
  EXPECT_EQ(read_text(path), "first");
  EXPECT_THROW(write_file_atomically(path,
                                     [](const std::string& temporary) {
                                       std::ofstream(temporary) << "half";
                                       throw std::runtime_error("writer died");
                                     }),
               std::runtime_error);
  EXPECT_EQ(read_text(path), "first"); // untouched
  EXPECT_EQ(entries_in(dir), 1u);      // and no temporary left behind
  EXPECT_THROW(write_file_atomically(path, [](const std::string&) {}), WriteError); // wrote nothing
  append_file_atomically(path, "+second\n");
  EXPECT_EQ(read_text(path), "first+second\n");
  append_file_atomically(dir + "/new.jsonl", "row\n");
  EXPECT_EQ(read_text(dir + "/new.jsonl"), "row\n");
  EXPECT_THROW(write_file_atomically(dir + "/no/such/dir/x", std::string("x")), WriteError);
}

TEST(EnumNames, OneTableServesNamesJsonAndErrors) {
  EXPECT_EQ(enum_name(RoutingImpl::kReference), "reference");
  EXPECT_EQ(parse_enum<ConvAlgo>("onednn"), ConvAlgo::kOneDnn);
  EXPECT_EQ(enum_choices<Precision>(), "fp32 or bf16");
  try {
    parse_enum<DecoderMask>("labels");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown decoder mask 'labels': expected label or prediction");
  }
  EXPECT_EQ(nlohmann::json(RoutingSoftmax::kChildren), "children");
  EXPECT_EQ(nlohmann::json("mse").get<ReconstructionLoss>(), ReconstructionLoss::kMeanSquared);
  // Unlike NLOHMANN_JSON_SERIALIZE_ENUM, an unknown name is an error, not the first value.
  EXPECT_THROW(nlohmann::json("fast").get<RoutingImpl>(), std::invalid_argument);
  EXPECT_EQ(enum_map<ConvAlgo>().size(), 5u);
}

TEST(Options, JsonRoundTripAndRunsFromBeforeTheMarginWasNested) {
  auto seed = preset_options("seed");
  EXPECT_EQ(nlohmann::json(train_options_from_json(nlohmann::json(seed))), nlohmann::json(seed));
  // A config.json as capsnet wrote it before: flat margin keys, no precision or device.
  nlohmann::json old = nlohmann::json(seed);
  old.erase("margin");
  old.erase("precision");
  old.erase("device");
  old["margin_m_plus"] = 0.8;
  old["margin_m_minus"] = 0.2;
  old["margin_lambda"] = 0.25;
  old["margin_squared"] = false;
  const auto read = train_options_from_json(old);
  EXPECT_EQ(read.margin.m_plus, 0.8);
  EXPECT_EQ(read.margin.m_minus, 0.2);
  EXPECT_EQ(read.margin.lambda, 0.25);
  EXPECT_FALSE(read.margin.squared);
  EXPECT_EQ(read.precision, Precision::kFp32);
  auto bad = nlohmann::json(seed);
  bad["routing"] = "quantum";
  EXPECT_THROW(train_options_from_json(bad), std::invalid_argument);
  bad = nlohmann::json(seed);
  bad["epochs"] = 0;
  EXPECT_THROW(train_options_from_json(bad), std::invalid_argument);
}

TEST(Registry, OneListOfDataSets) {
  EXPECT_EQ(dataset_names(), (std::vector<std::string>{"mnist", "fashion-mnist", "multimnist",
                                                       "expanded-mnist", "affine-mnist",
                                                       "folder"}));
  EXPECT_TRUE(dataset_info("folder").folder);
  EXPECT_EQ(dataset_info("fashion-mnist").class_names.at(9), "Ankle boot");
  EXPECT_EQ(dataset_info("mnist").default_dir, "data/mnist");
  EXPECT_EQ(dataset_info("fashion-mnist").num_classes, 10);
  // Generated from MNIST's files, at their own sizes.
  EXPECT_EQ(dataset_info("multimnist").default_dir, "data/mnist");
  EXPECT_EQ(dataset_info("multimnist").image_size, 36);
  EXPECT_EQ(dataset_info("affine-mnist").image_size, 40);
  try {
    dataset_info("cifar");
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("mnist, fashion-mnist"), std::string::npos) << e.what();
  }
  auto options = preset_options("paper");
  options.dataset = "cifar";
  EXPECT_THROW(validate(options), std::invalid_argument);
}

TEST(Batch, MultiHotTargets) {
  EXPECT_TRUE(multi_hot(at::tensor({2, 0}, at::kLong), 3)
                  .equal(at::tensor({0.f, 0.f, 1.f, 1.f, 0.f, 0.f}).view({2, 3})));
  EXPECT_TRUE(multi_hot(at::tensor({0, 2, 1, 2}, at::kLong).view({2, 2}), 3)
                  .equal(at::tensor({1.f, 0.f, 1.f, 0.f, 1.f, 1.f}).view({2, 3})));
}

TEST(Sampler, EveryEpochIsAPermutationAndRanksSplitEachBatch) {
  const EpochSampler sampler(/*size=*/23, /*batch_size=*/5, /*seed=*/3);
  ASSERT_EQ(sampler.steps_per_epoch(), 5);
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 5; ++step) {
    const auto idx = sampler.indices(1, step);
    EXPECT_EQ(idx.size(0), step < 4 ? 5 : 3);
    seen.insert(seen.end(), idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
  }
  std::sort(seen.begin(), seen.end());
  for (int64_t k = 0; k < 23; ++k) EXPECT_EQ(seen[k], k);
  EXPECT_FALSE(sampler.indices(0, 0).equal(sampler.indices(1, 0))); // reshuffled each epoch
  EXPECT_TRUE(sampler.indices(1, 2).equal(EpochSampler(23, 5, 3).indices(1, 2)));
  auto a = sampler.step_rng(2, 3), b = EpochSampler(23, 5, 3).step_rng(2, 3);
  EXPECT_EQ(a(), b());
  // Three ranks: disjoint slices whose concatenation is the global batch.
  for (int64_t step : {0, 4}) {
    std::vector<at::Tensor> parts;
    for (int64_t rank = 0; rank < 3; ++rank) {
      parts.push_back(ShardedSampler(23, 5, 3, rank, 3).indices(1, step));
    }
    EXPECT_TRUE(at::cat(parts).equal(sampler.indices(1, step))) << "step " << step;
    EXPECT_EQ(parts[0].size(0), step == 0 ? 2 : 1);
  }
  EXPECT_THROW(ShardedSampler(23, 5, 3, 3, 3), c10::Error);
}

TEST(DatasetSource, AugmentsOnlyWithARandomStream) {
  Dataset data;
  data.images = at::randint(0, 256, {6, 1, 8, 8}, at::kLong).to(at::kByte);
  data.labels = at::arange(6, at::kLong) % 3;
  data.num_classes = 3;
  const DatasetSource source(data, /*max_shift=*/2, /*normalize=*/false);
  const auto idx = at::tensor({4, 1}, at::kLong);
  const auto plain = source.get(idx, nullptr);
  EXPECT_TRUE(plain.images.equal(data.images.index_select(0, idx).to(at::kFloat) / 255));
  EXPECT_TRUE(plain.labels.equal(at::tensor({1, 1}, at::kLong)));
  EXPECT_TRUE(plain.recon_targets.equal(plain.images));
  std::mt19937_64 rng(5), same(5);
  EXPECT_TRUE(source.get(idx, &rng).images.equal(source.get(idx, &same).images));
}

TEST(Decoder, EachMaskedCapsuleGetsItsOwnReconstruction) {
  torch::manual_seed(0);
  Decoder decoder(DecoderOptions(/*num_capsules=*/4, /*capsule_dim=*/3, {1, 5, 5}).hidden({7}));
  EXPECT_EQ(decoder->named_parameters().size(), 4u); // 0.weight, 0.bias, 2.weight, 2.bias
  EXPECT_TRUE(decoder->named_parameters().contains("2.weight"));
  auto capsules = at::randn({2, 4, 3});
  auto pairs = at::tensor({1, 3, 0, 2}, at::kLong).view({2, 2});
  auto both = decoder->forward(capsules, pairs);
  ASSERT_EQ(both.sizes(), (at::IntArrayRef{2, 2, 1, 5, 5}));
  for (int64_t p = 0; p < 2; ++p) {
    auto one = decoder->forward(capsules, pairs.select(1, p).contiguous());
    EXPECT_TRUE(at::allclose(both.select(1, p), one, 1e-6, 1e-7)) << "p = " << p;
  }
  // Only the masked capsule matters.
  auto other = capsules.clone();
  other.select(1, 2).fill_(9.0);
  EXPECT_TRUE(decoder->forward(other, at::tensor({1, 3}, at::kLong))
                  .equal(decoder->forward(capsules, at::tensor({1, 3}, at::kLong))));
}

TEST(Metrics, OneLabelAndSeveralLabelsPerImage) {
  auto scores = at::tensor({0.9f, 0.8f, 0.1f, 0.2f, 0.7f, 0.6f, 0.3f, 0.1f, 0.5f}).view({3, 3});
  EXPECT_EQ(count_correct(scores, at::tensor({0, 2, 2}, at::kLong)), 2); // argmax 0, 1, 2
  // Two labels each: predicted sets {0,1}, {1,2}, {0,2}.
  auto pairs = at::tensor({1, 0, 1, 2, 0, 1}, at::kLong).view({3, 2});
  EXPECT_EQ(count_correct(scores, pairs), 2);
  EvalResult result;
  accumulate(result, scores, pairs);
  EXPECT_EQ(result.correct, 2);
  EXPECT_EQ(result.total, 3);
  EXPECT_TRUE(result.confusion.empty());
  EXPECT_EQ(result.class_total, (std::vector<int64_t>{2, 3, 1}));
  EXPECT_EQ(result.class_correct, (std::vector<int64_t>{2, 2, 1}));
  EvalResult single;
  accumulate(single, scores, at::tensor({0, 1, 1}, at::kLong));
  EXPECT_EQ(single.confusion[1][1], 1);
  EXPECT_EQ(single.confusion[1][2], 1);
  EXPECT_EQ(single.errors(), 1);
}

// A library user's own model and objective: softmax regression with cross entropy.
struct LinearTask : Task {
  explicit LinearTask(int64_t pixels, int64_t classes) : linear(pixels, classes) {}
  torch::nn::Module& module() override { return *linear; }
  TaskOutput forward(const Batch& batch, bool) override {
    auto logits = linear->forward(batch.images.flatten(1));
    return {at::cross_entropy_loss(logits, batch.labels), logits};
  }
  torch::nn::Linear linear;
};

Dataset bars(int64_t n) { // class k: a bright row k on a 6x6 image
  Dataset data;
  data.images = at::zeros({n, 1, 6, 6}, at::kByte);
  data.labels = at::arange(n, at::kLong) % 6;
  for (int64_t i = 0; i < n; ++i) data.images[i][0][i % 6].fill_(255);
  data.num_classes = 6;
  return data;
}

TEST(TrainStep, TheHookSeesTheGradientsBeforeTheUpdate) {
  torch::manual_seed(1);
  LinearTask task(36, 6);
  torch::optim::SGD sgd(task.linear->parameters(), torch::optim::SGDOptions(0.5));
  TrainStep step(task, sgd);
  const DatasetSource source(bars(12), 0, false);
  const auto batch = source.get(at::arange(12, at::kLong), nullptr);
  const auto before = task.linear->weight.detach().clone();
  at::Tensor seen;
  step.on_gradients = [&] {
    EXPECT_TRUE(task.linear->weight.equal(before)); // not yet updated
    seen = task.linear->weight.grad().clone();
    task.linear->weight.grad().mul_(2); // what an all-reduce of two equal ranks' sums does
  };
  const auto out = step(batch);
  ASSERT_TRUE(seen.defined());
  EXPECT_GT(seen.abs().max().item<float>(), 0);
  // SGD applied the hook's gradient: w - 0.5 * 2 * g.
  EXPECT_TRUE(at::allclose(task.linear->weight.detach(), before - seen, 1e-6, 1e-7));
  EXPECT_FALSE(out.loss.requires_grad());
  EXPECT_EQ(out.scores.sizes(), (at::IntArrayRef{12, 6}));
}

TEST(TrainStep, NonFiniteLossStopsBeforeTheUpdate) {
  LinearTask task(36, 6);
  torch::optim::SGD sgd(task.linear->parameters(), torch::optim::SGDOptions(0.5));
  TrainStep step(task, sgd);
  auto batch = DatasetSource(bars(6), 0, false).get(at::arange(6, at::kLong), nullptr);
  batch.images[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  const auto before = task.linear->weight.detach().clone();
  bool hook_ran = false;
  step.on_gradients = [&] { hook_ran = true; };
  EXPECT_THROW(step(batch), NonFiniteLoss);
  EXPECT_FALSE(hook_ran);
  EXPECT_TRUE(task.linear->weight.equal(before));
}

TEST(Trainer, TrainsALibraryUsersOwnTaskAndStopsAndResumesExactly) {
  const DatasetSource train(bars(60), 0, false), test(bars(18), 0, false);
  auto run = [&](std::vector<int64_t> stops, std::vector<TrainingState>* states) {
    torch::manual_seed(2);
    LinearTask task(36, 6);
    torch::optim::Adam adam(task.linear->parameters(), torch::optim::AdamOptions(0.05));
    const EpochSampler sampler(train.size(), 8, /*seed=*/4);
    Trainer trainer(task, train, sampler, adam);
    trainer.schedule = {0.05, 0.9};
    trainer.evaluation = {&test, 7};
    int64_t hooks = 0;
    trainer.on_gradients() = [&] { ++hooks; };
    TrainingState state;
    FitResult result;
    for (auto max_steps : stops) { // the same optimizer lives on: only the loop stops
      trainer.max_steps = max_steps;
      result = trainer.fit(state, /*epochs=*/3);
      if (states) states->push_back(state);
    }
    EXPECT_EQ(hooks, 3 * sampler.steps_per_epoch());
    EXPECT_EQ(state.global_step, 3 * sampler.steps_per_epoch());
    return std::make_pair(task.linear->weight.detach().clone(), result);
  };
  const auto [straight, result] = run({0}, nullptr);
  EXPECT_FALSE(result.interrupted);
  EXPECT_EQ(result.last_eval.total, 18);
  EXPECT_EQ(result.last_eval.accuracy(), 1.0); // linearly separable
  std::vector<TrainingState> states;
  const auto [pieces, last] = run({5, 9, 0}, &states); // stops mid-epoch 1, then mid-epoch 2
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[0].epoch, 0);
  EXPECT_EQ(states[0].step_in_epoch, 5);
  EXPECT_EQ(states[1].epoch, 1);
  EXPECT_EQ(states[1].step_in_epoch, 6);
  EXPECT_TRUE(pieces.equal(straight));
}

// Counts what would make the host wait for a GPU: .item()
// (aten::_local_scalar_dense) and .to()/.cpu() naming the CPU as the target
// device, wherever they are dispatched (RecordFunction sees every op). A
// dtype change (aten::to.dtype, then _to_copy on the tensor's own device) is
// no read. On a CPU machine a conversion that names the tensor's own device
// counts as well: at::cross_entropy_loss makes one (log_softmax's toType()),
// which on a GPU names the GPU; LinearTaskReadFree avoids it.
class HostReads {
 public:
  HostReads() {
    count_ = 0;
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&on_start).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  }
  ~HostReads() { at::removeCallback(handle_); }
  int64_t count() const { return count_.load(); }

 private:
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    const std::string name = fn.name();
    bool read = name == "aten::_local_scalar_dense";
    if (!read && name == "aten::to") {
      for (const auto& input : fn.inputs()) read = read || (input.isDevice() && input.toDevice().is_cpu());
    }
    if (read) ++count_;
    return nullptr;
  }
  static inline std::atomic<int64_t> count_{0};
  at::CallbackHandle handle_ = 0;
};

// Records the number of host reads at each progress report.
struct ReadsAtReports : TrainLogger {
  const HostReads* reads = nullptr;
  std::vector<int64_t> at_report;
  std::vector<double> losses;
  void step(int64_t, int64_t, int64_t, int64_t, double, double loss, double, double) override {
    at_report.push_back(reads->count());
    losses.push_back(loss);
  }
};

// LinearTask with the same loss written without cross_entropy_loss.
struct LinearTaskReadFree : LinearTask {
  using LinearTask::LinearTask;
  TaskOutput forward(const Batch& batch, bool) override {
    auto logits = linear->forward(batch.images.flatten(1));
    const auto loss = -at::log_softmax(logits, 1).gather(1, batch.labels.unsqueeze(1)).mean();
    return {loss, logits};
  }
};

TEST(HostReads, SeesItemAndCopiesToTheCpu) {
  HostReads reads;
  const auto t = at::ones({2});
  (void)t.sum().item<float>();
  (void)t.to(at::kCPU);
  (void)t.cpu();
  (void)t.to(at::kDouble); // a dtype change is no read
  EXPECT_EQ(reads.count(), 3);
}

TEST(Trainer, OneProcessReadsTheDeviceOnlyAtItsReports) {
  const DatasetSource train(bars(48), 1, false); // shifts: the augmentation runs too
  auto run = [&](int64_t every, std::vector<int64_t>* reads_at_reports) {
    torch::manual_seed(3);
    LinearTaskReadFree task(36, 6);
    Adam adam(task.linear->parameters(), torch::optim::AdamOptions(0.05));
    const EpochSampler sampler(train.size(), 4, /*seed=*/5);
    Trainer trainer(task, train, sampler, adam);
    trainer.schedule = {0.05, 0.9};
    trainer.report_every_steps = every;
    HostReads reads;
    ReadsAtReports log;
    log.reads = &reads;
    trainer.logger = &log;
    TrainingState state;
    trainer.fit(state, 1); // 12 steps
    if (reads_at_reports) *reads_at_reports = log.at_report;
    return std::make_pair(task.linear->weight.detach().clone(), log.losses.back());
  };
  std::vector<int64_t> reads_at_reports;
  const auto [weights, loss] = run(4, &reads_at_reports);
  // Reports after steps 4, 8 and 12, each with its one read; the steps
  // between them read nothing.
  EXPECT_EQ(reads_at_reports, (std::vector<int64_t>{1, 2, 3}));
  // A report after every step changes nothing but the reads.
  const auto [weights_every_step, loss_every_step] = run(1, &reads_at_reports);
  EXPECT_EQ(reads_at_reports.size(), 12u);
  EXPECT_EQ(reads_at_reports.back(), 12);
  EXPECT_TRUE(weights_every_step.equal(weights));
  EXPECT_EQ(loss_every_step, loss); // the epoch's mean loss, bit for bit
}

// Its training loss turns NaN at the third step.
struct NaNAtStepThree : LinearTask {
  using LinearTask::LinearTask;
  int64_t steps = 0;
  TaskOutput forward(const Batch& batch, bool training) override {
    auto out = LinearTask::forward(batch, training);
    if (training && ++steps == 3) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
    return out;
  }
};

TEST(Trainer, ANonFiniteLossIsNamedWithItsStepAtTheNextRead) {
  const DatasetSource train(bars(48), 0, false);
  NaNAtStepThree task(36, 6);
  Adam adam(task.linear->parameters(), torch::optim::AdamOptions(0.05));
  const EpochSampler sampler(train.size(), 4, /*seed=*/5);
  Trainer trainer(task, train, sampler, adam);
  trainer.report_every_steps = 4;
  TrainingState state;
  try {
    trainer.fit(state, 1);
    FAIL() << "no error";
  } catch (const AgreedTrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite loss (nan) at epoch 1, step 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(task.steps, 4); // found at the read after step 4
}

// A step of each capsule model, on its own data path (the shift, and
// Efficient-CapsNet's digit augmentation), reads nothing back.
TEST(Trainer, CapsuleModelsStepWithoutReadingTheDevice) {
  for (const std::string name : {"capsnet", "efficient-capsnet"}) {
    SCOPED_TRACE(name);
    const auto& info = model_info(name);
    auto options = info.bench_options();
    if (name == "capsnet") options.model = testing::tiny_config();
    DataShape shape;
    shape.image_size = name == "capsnet" ? 12 : 28;
    Dataset data;
    torch::manual_seed(4);
    data.images = at::randint(0, 256, {8, 1, shape.image_size, shape.image_size}).to(at::kByte);
    data.labels = at::arange(8, at::kLong) % 10;
    data.num_classes = 10;
    SourceOptions source_options;
    source_options.shift = 2;
    source_options.digit_augment = name == "efficient-capsnet";
    const DatasetSource train(data, source_options);
    const auto network = info.build(shape, options);
    auto task = info.task(network, options);
    Adam adam(network->parameters(), torch::optim::AdamOptions(1e-3));
    const EpochSampler sampler(train.size(), 4, /*seed=*/1);
    Trainer trainer(*task, train, sampler, adam);
    trainer.report_every_steps = 100;
    TrainingState state;
    trainer.fit(state, 1); // the first steps set up what they keep
    HostReads reads;
    ReadsAtReports log;
    log.reads = &reads;
    trainer.logger = &log;
    trainer.fit(state, 2); // 2 steps, one report
    EXPECT_EQ(log.at_report, (std::vector<int64_t>{1}));
    EXPECT_EQ(reads.count(), 1);
  }
}

// A StepGraph that replays by running the recorded function again: a CUDA
// graph's warm-up, static inputs, capture, replays and partial batches, on
// the CPU (the *_CUDA tests capture kernels).
struct RerunGraph : StepGraph {
  std::function<void()> recorded;
  int64_t* counts; // warm-ups, captures, replays
  explicit RerunGraph(int64_t* counts_) : counts(counts_) {}
  void warm_up(const std::function<void()>& body) override {
    ++counts[0];
    body();
  }
  void capture(const std::function<void()>& body) override {
    ++counts[1];
    recorded = body;
  }
  void replay() override {
    ++counts[2];
    recorded();
  }
};

TEST(Trainer, AGraphedRunEndsWithTheEagerRunsWeightsAndResumesExactly) {
  const auto& info = model_info("capsnet");
  auto options = info.bench_options();
  options.model = testing::tiny_config();
  DataShape shape;
  shape.image_size = 12;
  Dataset data;
  torch::manual_seed(4);
  data.images = at::randint(0, 256, {46, 1, 12, 12}).to(at::kByte);
  data.labels = at::arange(46, at::kLong) % 10;
  data.num_classes = 10;
  const DatasetSource train(data, 1, false);
  const EpochSampler sampler(train.size(), 4, /*seed=*/2); // 12 steps, the last of 2 images
  // `stops`: max_steps of each fit() call, each with a new Trainer (and graph).
  auto run = [&](bool graphed, std::vector<int64_t> stops, int64_t* counts) {
    torch::manual_seed(6);
    const auto network = info.build(shape, options);
    auto task = info.task(network, options);
    Adam adam(network->parameters(), torch::optim::AdamOptions(3e-3));
    TrainingState state;
    for (auto max_steps : stops) {
      Trainer trainer(*task, train, sampler, adam);
      trainer.schedule = {3e-3, 0.9}; // the learning rate changes at every step
      trainer.max_steps = max_steps;
      if (graphed) trainer.graph = std::make_unique<RerunGraph>(counts);
      trainer.fit(state, 5); // 60 steps
    }
    EXPECT_EQ(state.global_step, 60);
    std::vector<at::Tensor> weights;
    for (const auto& p : network->parameters()) weights.push_back(p.detach().clone());
    return weights;
  };
  int64_t counts[3] = {0, 0, 0}, resumed_counts[3] = {0, 0, 0};
  const auto eager = run(false, {0}, counts);
  const auto graphed = run(true, {0}, counts);
  // 55 full steps: 3 warm-ups, a capture and 52 replays; 5 partial ones eager.
  EXPECT_EQ(counts[0], 3);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(counts[2], 52);
  const auto resumed = run(true, {17, 0}, resumed_counts);
  EXPECT_EQ(resumed_counts[1], 2); // each Trainer captured its own
  ASSERT_EQ(graphed.size(), eager.size());
  for (size_t k = 0; k < eager.size(); ++k) {
    EXPECT_TRUE(graphed[k].equal(eager[k])) << "parameter " << k;
    EXPECT_TRUE(resumed[k].equal(eager[k])) << "parameter " << k;
  }
}

TEST(CudaGraphMode, AutoIsOnOnlyWhereAGraphCanRun) {
  EXPECT_FALSE(use_cuda_graph(CudaGraphMode::kAuto, c10::Device(c10::kCPU), 1));
  EXPECT_FALSE(use_cuda_graph(CudaGraphMode::kOff, c10::Device(c10::kCUDA, 0), 1));
  EXPECT_FALSE(use_cuda_graph(CudaGraphMode::kAuto, c10::Device(c10::kCUDA, 0), 2));
  EXPECT_EQ(use_cuda_graph(CudaGraphMode::kAuto, c10::Device(c10::kCUDA, 0), 1),
            cuda_graphs_built());
  try {
    use_cuda_graph(CudaGraphMode::kOn, c10::Device(c10::kCPU), 1);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("needs a CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_THROW(use_cuda_graph(CudaGraphMode::kOn, c10::Device(c10::kCUDA, 0), 2),
               std::invalid_argument);
}

// Trains normally; its evaluation loss is NaN, as a diverged model's is.
struct DivergedInEvaluation : LinearTask {
  using LinearTask::LinearTask;
  TaskOutput forward(const Batch& batch, bool training) override {
    auto out = LinearTask::forward(batch, training);
    if (!training) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
    return out;
  }
};

TEST(Trainer, ANonFiniteTestLossNeverMakesABestCheckpointOrAMetricsRow) {
  const DatasetSource train(bars(24), 0, false), test(bars(12), 0, false);
  DivergedInEvaluation task(36, 6);
  torch::optim::SGD sgd(task.linear->parameters(), torch::optim::SGDOptions(0.1));
  const EpochSampler sampler(train.size(), 8, 1);
  Trainer trainer(task, train, sampler, sgd);
  trainer.evaluation = {&test, 12};
  std::vector<std::string> saved;
  trainer.checkpoints = {"last.pt", "best.pt",
                         [&](const std::string& path, const TrainingState&) { saved.push_back(path); }};
  struct CountingLogger : TrainLogger {
    int rows = 0;
    void epoch(const EpochSummary&) override { ++rows; }
  } logger;
  trainer.logger = &logger;
  TrainingState state;
  try {
    trainer.fit(state, 2);
    FAIL() << "no error";
  } catch (const TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite test loss"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(saved.empty()); // neither best.pt nor last.pt of the diverged epoch
  EXPECT_EQ(logger.rows, 0);
}

TEST(Options, StoredArchitecturesAreBoundedBeforeAnythingIsBuilt) {
  // A checkpoint's options once asked for a decoder of 10^8 units.
  auto options = nlohmann::json(preset_options("paper"));
  options["model"]["decoder_hidden"] = {100000000};
  EXPECT_THROW(train_options_from_json(options), std::invalid_argument);
  options["model"]["decoder_hidden"] = {512, 1024};
  options["model"]["conv1_channels"] = 4096;
  options["model"]["primary_types"] = 1024; // each bound alone, but 2^33 parameters together
  try {
    train_options_from_json(options);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("parameters"), std::string::npos) << e.what();
  }
  options["model"]["primary_types"] = 32;
  options["model"]["conv1_channels"] = 256;
  options["margin"]["m_minus"] = 1.5;
  EXPECT_THROW(train_options_from_json(options), std::invalid_argument);
  // fuzz_options found these: nlohmann casts a float into an integer field,
  // undefined behaviour when it does not fit.
  options = nlohmann::json(preset_options("paper"));
  options["epochs"] = 1.0244e39;
  EXPECT_THROW(train_options_from_json(options), std::invalid_argument);
  options["epochs"] = 10;
  options["model"]["decoder_hidden"] = {512, 5e121};
  EXPECT_THROW(train_options_from_json(options), std::invalid_argument);
  options["model"]["decoder_hidden"] = {512, 1024};
  options["seed"] = -1;
  EXPECT_THROW(train_options_from_json(options), std::invalid_argument);
  options["seed"] = 7;
  EXPECT_EQ(train_options_from_json(options).seed, 7u);
}

TEST(CapsNetTask, SeveralLabelsMaskTheLongestCapsulesInEvaluation) {
  torch::manual_seed(3);
  CapsNet model(testing::tiny_config());
  CapsNetTask task(model, CapsNetObjective{});
  Batch batch;
  batch.images = at::rand({3, 1, 12, 12});
  batch.labels = at::tensor({0, 4, 2, 7, 9, 1}, at::kLong).view({3, 2});
  batch.targets = multi_hot(batch.labels, 10);
  batch.recon_targets = batch.images.unsqueeze(1).expand({3, 2, 1, 12, 12});
  torch::NoGradGuard no_grad;
  const auto out = task.forward(batch, /*training=*/false);
  const auto caps = model->capsules(batch.images);
  const auto lengths = caps.norm(2, -1);
  EXPECT_TRUE(at::allclose(out.scores, lengths, 1e-5, 1e-6));
  const auto top = std::get<1>(lengths.topk(2, 1));
  const auto expected = CapsNetObjective{}(lengths, batch.targets, model->reconstruct(caps, top),
                                           batch.recon_targets);
  EXPECT_NEAR(out.loss.item<double>(), expected.total.item<double>(), 1e-5);
  // In training the true labels mask the decoder.
  const auto trained = task.forward(batch, /*training=*/true);
  const auto by_label = CapsNetObjective{}(lengths, batch.targets,
                                           model->reconstruct(caps, batch.labels),
                                           batch.recon_targets);
  EXPECT_NEAR(trained.loss.item<double>(), by_label.total.item<double>(), 1e-5);
}

} // namespace
} // namespace capsnet
