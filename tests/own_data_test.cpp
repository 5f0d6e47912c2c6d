// Own data that learns with the defaults: the calibrated start of a capsule
// network at any image size (CapsuleNetworkImpl::calibrate), precise batch
// norm (BatchNormPolicy), the not-learning line, and the validation split.
#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/inference/export.h"
#include "capsnet/engine/policies.h"
#include "capsnet/registry/task.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/layers/batch_norm.h"
#include "capsnet/model/capsnet.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/nn/functional/activation.h>

#include <map>
#include <set>

namespace capsnet {
namespace {

// Pictures as a user's folder gives them: a uniform background of a random
// colour (never black) with a lighter square at a random place.
at::Tensor coloured_pictures(int64_t n, int64_t channels, int64_t side, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto background = at::rand({n, channels, 1, 1}, gen) * 0.5 + 0.15;
  auto images = background.expand({n, channels, side, side}).clone();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t size = side / 3, top = (i * 7) % (side - size), left = (i * 5) % (side - size);
    images[i].narrow(1, top, size).narrow(2, left, size).add_(0.35);
  }
  return images.clamp(0, 1);
}

// Adam steps of the paper's objective (margin loss, lr 1e-3) on `images`
// labelled 0, 1, ...; after them, the mean length of the capsules of the
// classes each image does not show: near 1 when they saturated (Eq. 4's
// max(0, |v| - m-)^2 then pushes them all alike, and nothing is learned).
double absent_length_after_adam_steps(CapsNet& net, const at::Tensor& images, int steps) {
  CapsNetTask task(net, CapsNetObjective{});
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-3));
  Batch batch;
  batch.images = images;
  batch.labels = at::arange(images.size(0), at::kLong) % net->config.num_classes;
  batch.targets = multi_hot(batch.labels, net->config.num_classes);
  batch.recon_targets = images;
  for (int i = 0; i < steps; ++i) {
    adam.zero_grad();
    task.forward(batch, /*training=*/true).loss.backward();
    adam.step();
  }
  at::NoGradGuard no_grad;
  const auto lengths = at::norm(net->capsules(images), 2, {-1});
  const auto absent = 1 - batch.targets;
  return ((lengths * absent).sum() / absent.sum()).item<double>();
}

// (1/K) E_b[sum_i |u_i|_1], computed here from the primary capsules.
double drive_of(CapsNet& net, const at::Tensor& images) {
  at::NoGradGuard no_grad;
  const auto u = net->primary_capsules->forward(torch::relu(net->conv1->forward(images)));
  return u.abs().sum({1, 2}).mean().item<double>() / static_cast<double>(net->config.num_classes);
}

TEST(Calibration, EverySizeChannelsAndClassesStaysResponsiveOnColouredBackgrounds) {
  struct Case {
    int64_t side, channels, classes;
  };
  // The paper's size (28) to 96 pixels; classes bounded where W_ij would not fit a test.
  const std::vector<Case> cases = {{28, 1, 100}, {28, 3, 2}, {40, 3, 3}, {40, 1, 10},
                                   {64, 3, 5},   {64, 1, 2}, {96, 3, 2}};
  int saturated_as_drawn = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE("side " + std::to_string(c.side) + ", " + std::to_string(c.channels) +
                 " channels, " + std::to_string(c.classes) + " classes");
    CapsNetConfig config;
    config.image_size = c.side;
    config.in_channels = c.channels;
    config.num_classes = c.classes;
    // One picture at 96 pixels: its primary capsules' convolution is most of the test's time.
    const auto images = coloured_pictures(c.side < 96 ? 2 : 1, c.channels, c.side, 11);
    torch::manual_seed(3);
    CapsNet drawn(config);
    torch::manual_seed(3);
    CapsNet calibrated(config);
    const auto weight = calibrated->digit_capsules->weight.detach().clone();
    const auto calibration = calibrated->calibrate(images);
    // The drive as computed here, and the scale that bounds it (3 digits).
    const double drive = drive_of(calibrated, images);
    EXPECT_NEAR(calibration.drive, drive, 1e-4 * drive);
    const double expected =
        drive > CapsuleNetworkImpl::kMaxDrive ? CapsuleNetworkImpl::kTargetDrive / drive : 1.0;
    EXPECT_NEAR(calibration.scale, expected, 0.005 * expected);
    EXPECT_EQ(calibrated->config.routing_input_scale, calibration.scale);
    EXPECT_EQ(calibrated->digit_capsules->options.input_scale(), calibration.scale);
    EXPECT_TRUE(calibrated->digit_capsules->weight.equal(weight)); // W_ij as drawn
    // What it is for: a few Adam steps leave the class capsules responsive,
    // where the network as drawn saturates.
    const double as_drawn = absent_length_after_adam_steps(drawn, images, 3);
    const double after = absent_length_after_adam_steps(calibrated, images, 3);
    if (as_drawn > 0.9) ++saturated_as_drawn;
    EXPECT_LT(after, 0.9) << "as drawn: " << as_drawn;
    std::printf("side %ld, %ld channels, %ld classes: drive %.1f, scale %.3g; absent classes' "
                "mean length after 3 Adam steps %.3f as drawn, %.3f calibrated\n",
                static_cast<long>(c.side), static_cast<long>(c.channels),
                static_cast<long>(c.classes), drive, calibration.scale, as_drawn, after);
  }
  EXPECT_GE(saturated_as_drawn, 3); // the sweep shows the problem it fixes
}

TEST(Calibration, TheExportFoldsTheScaleIntoW) {
  CapsNetConfig config;
  config.image_size = 40;
  config.in_channels = 3;
  config.num_classes = 3;
  torch::manual_seed(5);
  CapsNet net(config);
  const auto images = coloured_pictures(2, 3, 40, 7);
  const auto scale = net->calibrate(images).scale;
  ASSERT_LT(scale, 1.0);
  // The seed's network computes u_hat = W u: W times the scale gives the same capsules.
  at::Tensor exported;
  for (const auto& [name, value] : seed_state_dict(net)) {
    if (name == "digit_capsules.weight") exported = value;
  }
  ASSERT_TRUE(exported.defined());
  EXPECT_TRUE(at::allclose(exported, net->digit_capsules->weight.detach() * scale));
  TrainOptions options;
  options.model = net->config;
  EXPECT_EQ(export_config(options)["model"]["routing_input_scale"], 1.0);
  at::NoGradGuard no_grad;
  const auto calibrated = net->capsules(images);
  CapsNetConfig folded_config = net->config;
  folded_config.routing_input_scale = 1.0;
  CapsNet folded(folded_config);
  for (auto& [name, value] : folded->named_parameters().pairs()) {
    value.copy_(name == "digit_capsules.weight" ? exported : net->named_parameters()[name]);
  }
  EXPECT_TRUE(at::allclose(folded->capsules(images), calibrated, 1e-4, 1e-6));
}

std::string mnist_dir() {
  const char* dir = std::getenv("CAPSNET_TEST_MNIST");
  return dir ? dir : "data/mnist";
}

TEST(Calibration, ThePapersNetworkOnMnistIsUntouched) {
  const auto mnist = load_dataset(mnist_dir(), Split::kTrain, "mnist", /*limit=*/32);
  const auto images = mnist.images.to(at::kFloat) / 255;
  torch::manual_seed(1);
  CapsNet net{CapsNetConfig{}};
  const auto calibration = net->calibrate(images);
  EXPECT_EQ(calibration.scale, 1.0);
  EXPECT_EQ(net->config.routing_input_scale, 1.0);
  // Half the bound or less: MNIST's black background adds little.
  EXPECT_LT(calibration.drive, 0.6 * CapsuleNetworkImpl::kMaxDrive);
}

TEST(NotLearning, SaysSoOnlyAtChanceWithSaturatedOrSilentCapsules) {
  const auto saturated = at::full({64, 3}, 0.998);
  const auto line = not_learning_warning(0.334, 60000, saturated);
  EXPECT_NE(line.find("saturated"), std::string::npos) << line;
  EXPECT_NE(line.find("--calibrate-init"), std::string::npos) << line;
  EXPECT_NE(line.find("--w-init-std"), std::string::npos) << line;
  const auto silent = not_learning_warning(0.10, 60000, at::full({64, 10}, 0.001));
  EXPECT_NE(silent.find("near 0"), std::string::npos) << silent;
  // Learning: above chance, or capsules that answer (one long, the others short).
  EXPECT_EQ(not_learning_warning(0.52, 60000, saturated), "");
  // A small epoch's band: 891 examples of 3 classes guess within 4.7 points.
  EXPECT_NE(not_learning_warning(0.3098, 891, saturated), "");
  EXPECT_NE(not_learning_warning(0.375, 891, saturated), "");
  EXPECT_EQ(not_learning_warning(0.385, 891, saturated), "");
  EXPECT_EQ(not_learning_warning(0.345, 60000, saturated), "");
  auto answering = at::full({64, 3}, 0.05);
  answering.select(1, 0).fill_(0.95);
  EXPECT_EQ(not_learning_warning(0.334, 60000, answering), "");
  EXPECT_EQ(not_learning_warning(0.334, 60000, at::full({64, 3}, 0.5)), "");
}

TEST(ValidationSplit, StratifiedDeterministicAndDisjoint) {
  // 60 of class 0, 30 of class 1, 10 of class 2, interleaved.
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 100; ++i) labels.push_back(i % 10 < 6 ? 0 : i % 10 < 9 ? 1 : 2);
  const auto tensor = at::tensor(labels, at::kLong);
  const auto held = stratified_holdout(tensor, 20, 7);
  ASSERT_EQ(held.size(), 20u);
  EXPECT_TRUE(std::is_sorted(held.begin(), held.end()));
  std::map<int64_t, int> per_class;
  for (auto i : held) ++per_class[labels[i]];
  EXPECT_EQ(per_class[0], 12);
  EXPECT_EQ(per_class[1], 6);
  EXPECT_EQ(per_class[2], 2);
  EXPECT_EQ(stratified_holdout(tensor, 20, 7), held);
  EXPECT_NE(stratified_holdout(tensor, 20, 8), held);
  // Shares that do not divide: 7 of 100 gives 4.2, 2.1, 0.7 -> 4, 2, 1.
  std::map<int64_t, int> odd;
  for (auto i : stratified_holdout(tensor, 7, 7)) ++odd[labels[i]];
  EXPECT_EQ(odd[0], 4);
  EXPECT_EQ(odd[1], 2);
  EXPECT_EQ(odd[2], 1);
  const auto rest = complement(100, held);
  EXPECT_EQ(rest.size(), 80u);
  std::set<int64_t> all(rest.begin(), rest.end());
  all.insert(held.begin(), held.end());
  EXPECT_EQ(all.size(), 100u);
  EXPECT_TRUE(stratified_holdout(tensor, 0, 7).empty());
  EXPECT_THROW(stratified_holdout(tensor, 100, 7), std::invalid_argument);
}

// A batch norm straight on the pixels, then a linear layer: its running
// statistics can be computed by hand.
struct NormTask : Task {
  NormTask() : norm(1, 0.01, 1e-5), linear(36, 6) {
    module_.register_module("norm", norm);
    module_.register_module("linear", linear);
  }
  torch::nn::Module& module() override { return module_; }
  TaskOutput forward(const Batch& batch, bool) override {
    auto logits = linear->forward(norm->forward(batch.images).flatten(1));
    return {at::cross_entropy_loss(logits, batch.labels), logits};
  }
  torch::nn::Module module_;
  BatchNorm norm;
  torch::nn::Linear linear;
};

Dataset noisy_bars(int64_t n) {
  Dataset data;
  torch::manual_seed(4);
  data.images = (at::rand({n, 1, 6, 6}) * 120 + 60).to(at::kByte);
  data.labels = at::arange(n, at::kLong) % 6;
  for (int64_t i = 0; i < n; ++i) data.images[i][0][i % 6].fill_(250);
  data.num_classes = 6;
  return data;
}

TEST(PreciseBatchNorm, RunningStatisticsAreTheTrainingExamplesAfterOneShortEpoch) {
  const DatasetSource train(noisy_bars(48), 0, false), test(noisy_bars(12), 0, false);
  torch::manual_seed(9);
  NormTask task;
  torch::optim::SGD sgd(task.module().parameters(), torch::optim::SGDOptions(0.1));
  const EpochSampler sampler(train.size(), 16, 1);
  Trainer trainer(task, train, sampler, sgd);
  trainer.evaluation = {&test, 12};
  trainer.batch_norm = {/*images=*/48, /*batch_size=*/12};
  TrainingState state;
  trainer.fit(state, 1);
  // Four batches of 12 cover the 48 examples: the mean of their means is the
  // mean of every pixel, the variance the mean of their unbiased variances.
  const auto pixels = train.get(at::arange(48, at::kLong), nullptr).images;
  const double mean = pixels.mean().item<double>();
  EXPECT_NEAR(task.norm->running_mean.item<double>(), mean, 1e-5);
  // Momentum 0.01 over 3 steps would have left it near its initial 0.
  EXPECT_GT(mean, 0.3);
  const auto var = task.norm->running_var.item<double>();
  EXPECT_NEAR(var, pixels.var().item<double>(), 0.1 * pixels.var().item<double>());
  EXPECT_EQ(task.norm->momentum, 0.01); // restored
  // Off: the momentum average of three steps, still near its start.
  torch::manual_seed(9);
  NormTask plain;
  torch::optim::SGD sgd2(plain.module().parameters(), torch::optim::SGDOptions(0.1));
  Trainer untouched(plain, train, sampler, sgd2);
  untouched.batch_norm.images = 0;
  TrainingState state2;
  untouched.fit(state2, 1);
  EXPECT_LT(plain.norm->running_mean.item<double>(), 0.1 * mean);
  // Training itself is the same either way (batch norm trains on each batch's
  // own statistics): after a second epoch the weights match bit for bit.
  trainer.fit(state, 2);
  untouched.fit(state2, 2);
  EXPECT_TRUE(plain.linear->weight.equal(task.linear->weight));
}

TEST(ValidationSplit, BestIsChosenOnTheHeldOutExamples) {
  // The validation and test sources disagree on purpose (the test set's labels
  // are shuffled): best.pt must follow validation accuracy.
  auto whole = std::make_shared<DatasetSource>(noisy_bars(60), 0, false);
  const auto held = stratified_holdout(whole->data().labels, 12, 3);
  SubsetSource train(whole, complement(60, held)), validation(whole, held);
  EXPECT_EQ(train.size(), 48);
  EXPECT_EQ(validation.size(), 12);
  auto shuffled = noisy_bars(12);
  shuffled.labels = (shuffled.labels + 1) % 6;
  const DatasetSource test(shuffled, 0, false);
  NormTask task;
  torch::optim::SGD sgd(task.module().parameters(), torch::optim::SGDOptions(0.1));
  const EpochSampler sampler(train.size(), 16, 1);
  Trainer trainer(task, train, sampler, sgd);
  trainer.evaluation = {&test, 12, &validation};
  struct Rows : TrainLogger {
    std::vector<EpochRecord> rows;
    void epoch(const EpochSummary& s) override { rows.push_back(s.record()); }
  } rows;
  trainer.logger = &rows;
  std::vector<int64_t> best_epochs;
  trainer.checkpoints = {"last.pt", "best.pt", [&](const std::string& path, const TrainingState& s) {
                           if (path == "best.pt") best_epochs.push_back(s.epoch);
                         }};
  TrainingState state;
  trainer.fit(state, 4);
  ASSERT_EQ(rows.rows.size(), 4u);
  double best = -1;
  std::vector<int64_t> expected;
  for (const auto& row : rows.rows) {
    EXPECT_EQ(row.extra.at("val_size"), 12);
    const double accuracy = row.extra.at("val_accuracy");
    EXPECT_EQ(row.extra.count("best") == 1, accuracy > best);
    if (accuracy > best) best = accuracy, expected.push_back(row.epoch);
  }
  EXPECT_EQ(best_epochs, expected);
  EXPECT_EQ(state.best_epoch, expected.back());
  EXPECT_DOUBLE_EQ(state.best_accuracy, best);
  EXPECT_DOUBLE_EQ(state.best_test_accuracy, rows.rows[state.best_epoch - 1].test_accuracy);
}

} // namespace
} // namespace capsnet
