#include "capsnet/engine/checkpoint.h"
#include "capsnet/version.h"
#include "capsnet/engine/epoch_record.h"
#include "capsnet/registry/options.h"
#include "capsnet/recipes/run.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/engine/trainer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace capsnet {
namespace {

namespace fs = std::filesystem;

// Training options for the tiny model on the tiny synthetic data set.
TrainOptions tiny_options(const std::string& data_dir) {
  TrainOptions o;
  o.data_dir = data_dir;
  o.model = testing::tiny_config();
  o.epochs = 2;
  o.batch_size = 8;
  o.shift = 1;
  o.threads = 2;
  o.lr = 3e-3;
  o.eval_batch_size = 16;
  return o;
}

std::vector<at::Tensor> parameters_of(const std::string& checkpoint) {
  std::vector<at::Tensor> params;
  for (auto& p : load_checkpoint(checkpoint).capsnet("test")->parameters()) params.push_back(p.detach());
  return params;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class Engine : public ::testing::Test {
 protected:
  void SetUp() override {
    root = testing::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    data = root + "/data";
    fs::create_directories(data);
    testing::write_tiny_dataset(data, 36, 12);
  }
  std::string root, data;
};

TEST_F(Engine, CheckpointRoundTripKeepsEverything) {
  auto options = tiny_options(data);
  options.model.digit_bias = true;
  options.seed = 99;
  torch::manual_seed(4);
  CapsNet model(options.model);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  auto images = at::rand({3, 1, 12, 12});
  model->forward(images).lengths.sum().backward();
  adam.step();
  TrainingState state;
  state.epoch = 3;
  state.step_in_epoch = 2;
  state.global_step = 17;
  state.best_accuracy = 0.625;
  state.epoch_loss_sum = 1.5;
  state.epoch_correct = 5;
  state.epoch_seen = 16;
  state.epoch_seconds = 2.25;
  const auto path = root + "/ckpt.pt";
  save_checkpoint(path, model, &adam, options, state);
  // Written atomically: no temporary is left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(root), fs::directory_iterator()), 2) // data/, ckpt.pt
      << "a temporary file was left in " << root;

  auto loaded = load_checkpoint(path);
  EXPECT_EQ(nlohmann::json(loaded.options), nlohmann::json(options));
  EXPECT_EQ(loaded.state.global_step, 17);
  EXPECT_EQ(loaded.state.step_in_epoch, 2);
  EXPECT_EQ(loaded.state.best_accuracy, 0.625);
  EXPECT_EQ(loaded.state.epoch_seconds, 2.25);
  // The version that wrote it, CMake's project() version and the commit.
  EXPECT_EQ(loaded.written_by, std::string("capsnet ") + CAPSNET_VERSION + " (" + build_commit() + ")");
  EXPECT_NE(std::string(build_commit()), "");
  auto original = model->named_parameters();
  for (const auto& p : loaded.capsnet("test")->named_parameters()) {
    EXPECT_TRUE(p.value().equal(original[p.key()])) << p.key();
  }
  // The optimizer state comes back too: one more identical step gives identical weights.
  torch::optim::Adam restored(loaded.capsnet("test")->parameters(), torch::optim::AdamOptions(1e-3));
  load_optimizer_state(path, restored);
  for (auto* pair : {&adam, &restored}) pair->zero_grad();
  model->forward(images).lengths.sum().backward();
  loaded.capsnet("test")->forward(images).lengths.sum().backward();
  adam.step();
  restored.step();
  for (const auto& p : loaded.capsnet("test")->named_parameters()) {
    EXPECT_TRUE(p.value().equal(original[p.key()])) << p.key();
  }
}

TEST_F(Engine, BadCheckpointsGetClearErrors) {
  auto expect_error = [](const std::string& path, const std::string& what) {
    try {
      load_checkpoint(path);
      FAIL() << "no error for " << path;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(root + "/absent.pt", "not found");
  std::ofstream(root + "/garbage.pt") << "this is not a checkpoint";
  expect_error(root + "/garbage.pt", "not a readable checkpoint");
  torch::save(at::ones({3}), root + "/tensor.pt");
  expect_error(root + "/tensor.pt", "not a capsnet checkpoint");

  CapsNet model(testing::tiny_config());
  save_checkpoint(root + "/good.pt", model, nullptr, tiny_options(data), {});
  const auto size = fs::file_size(root + "/good.pt");
  fs::copy_file(root + "/good.pt", root + "/cut.pt");
  fs::resize_file(root + "/cut.pt", size / 2);
  expect_error(root + "/cut.pt", "not a readable checkpoint");
}

TEST_F(Engine, ResumedRunEndsWithTheSameWeightsAsAnUninterruptedOne) {
  auto options = tiny_options(data); // 36 images, batch 8: 5 steps an epoch
  set_thread_count(options.threads);
  const auto straight = root + "/straight", pieces = root + "/pieces";
  auto full = train(options, straight);
  EXPECT_FALSE(full.interrupted);

  TrainControl control;
  control.max_steps = 3; // stops mid-epoch 1
  auto first = train(options, pieces, control);
  ASSERT_TRUE(first.interrupted);
  EXPECT_EQ(first.state.epoch, 0);
  EXPECT_EQ(first.state.step_in_epoch, 3);
  control.resume = true;
  control.max_steps = 2; // ends exactly at the epoch boundary
  auto second = train(options, pieces, control);
  ASSERT_TRUE(second.interrupted);
  EXPECT_EQ(second.state.epoch, 1);
  control.max_steps = 0;
  auto last = train(options, pieces, control);
  EXPECT_FALSE(last.interrupted);

  auto a = parameters_of(last_checkpoint_path(straight));
  auto b = parameters_of(last_checkpoint_path(pieces));
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].equal(b[k])) << "parameter " << k;

  // The per-epoch metrics agree too, the interrupted epoch's train loss included.
  auto rows_a = lines_of(straight + "/metrics.jsonl"), rows_b = lines_of(pieces + "/metrics.jsonl");
  ASSERT_EQ(rows_a.size(), 2u);
  ASSERT_EQ(rows_b.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    auto ja = nlohmann::json::parse(rows_a[k]), jb = nlohmann::json::parse(rows_b[k]);
    EXPECT_EQ(ja["train_loss"], jb["train_loss"]);
    EXPECT_EQ(ja["test_accuracy"], jb["test_accuracy"]);
  }
  auto config = nlohmann::json::parse(std::ifstream(straight + "/config.json"));
  EXPECT_EQ(config["threads_used"], 2);
  EXPECT_EQ(config["model"]["num_classes"], 10);
  EXPECT_TRUE(config.contains("libtorch_version"));
  EXPECT_TRUE(fs::exists(best_checkpoint_path(straight)));
}

TEST_F(Engine, RefusesToOverwriteARun) {
  auto options = tiny_options(data);
  options.epochs = 1;
  train(options, root + "/run");
  EXPECT_THROW(train(options, root + "/run"), TrainingError);
}

TEST_F(Engine, NonFiniteLossStopsWithAClearErrorAndKeepsTheCheckpoint) {
  auto options = tiny_options(data);
  options.epochs = 1;
  train(options, root + "/run");
  const auto before = fs::last_write_time(last_checkpoint_path(root + "/run"));
  options.epochs = 3;
  options.lr = 1e30; // one Adam step moves weights by ~1e30: the next loss is not finite
  TrainControl control;
  control.resume = true;
  try {
    train(options, root + "/run", control);
    FAIL() << "no error";
  } catch (const TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite loss"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("last.pt"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::last_write_time(last_checkpoint_path(root + "/run")), before);
  EXPECT_EQ(load_checkpoint(last_checkpoint_path(root + "/run")).state.epoch, 1);
}

TEST_F(Engine, LearnsTheSyntheticClasses) {
  auto options = tiny_options(data);
  options.epochs = 20;
  options.shift = 0;
  options.lr = 1e-2;
  auto report = train(options, root + "/run");
  // Each class is a bright bar on its own row; chance is 10%, measured 100%.
  EXPECT_GE(report.last_eval.accuracy(), 0.9);
}

TEST(Options, PresetsDifferExactlyWhereTheSeedDeparts) {
  auto paper = preset_options("paper"), seed = preset_options("seed");
  EXPECT_TRUE(paper.margin.squared);
  EXPECT_FALSE(seed.margin.squared);
  EXPECT_EQ(seed.batch_size, 64);
  EXPECT_EQ(seed.shift, 0);
  EXPECT_TRUE(seed.normalize);
  EXPECT_EQ(seed.mask, DecoderMask::kPrediction);
  EXPECT_EQ(seed.recon_loss, ReconstructionLoss::kMeanSquared);
  EXPECT_EQ(seed.model.routing_softmax, RoutingSoftmax::kChildren);
  EXPECT_EQ(seed.model.w_init_std, 1.0);
  EXPECT_EQ(seed.recon_weight, paper.recon_weight);
  EXPECT_EQ(seed.lr, paper.lr);
  EXPECT_THROW(preset_options("fast"), std::invalid_argument);
  // JSON round trip.
  EXPECT_EQ(nlohmann::json(train_options_from_json(nlohmann::json(seed))), nlohmann::json(seed));
  auto bad = paper;
  bad.lr_decay = 1.5;
  EXPECT_THROW(validate(bad), std::invalid_argument);
}

// metrics.jsonl's rows: what the trainer writes reads back the same, rows
// without an evaluation leave its keys out, and bad rows are named.
TEST(EpochRecord, RoundTripsAndNamesBadRows) {
  EpochRecord r;
  r.epoch = 3;
  r.train_loss = 0.25;
  r.train_accuracy = 0.9;
  r.lr = 1e-3;
  r.seconds = 12.5;
  r.images_per_second = 480;
  r.evaluated = true;
  r.test_loss = 0.125;
  r.test_accuracy = 0.95;
  r.test_errors = 5;
  r.test_size = 100;
  r.eval_seconds = 1.5;
  r.extra["allreduce_exposed_seconds"] = 0.004;
  const nlohmann::json j = r;
  EXPECT_EQ(j.at("test_errors").get<int64_t>(), 5);
  EXPECT_EQ(j.at("allreduce_exposed_seconds").get<double>(), 0.004);
  const auto back = j.get<EpochRecord>();
  EXPECT_EQ(nlohmann::json(back), j);
  EXPECT_DOUBLE_EQ(back.test_error_percent(), 5.0);

  r.evaluated = false;
  const nlohmann::json plain = r;
  for (const char* key : {"test_loss", "test_accuracy", "test_errors", "test_size", "eval_seconds"}) {
    EXPECT_FALSE(plain.contains(key)) << key;
  }
  EXPECT_FALSE(plain.get<EpochRecord>().evaluated);
  // Written by hand: absent fields take their defaults, "epoch" is required.
  const auto hand = nlohmann::json::parse(R"({"epoch": 2, "test_loss": 0.5})").get<EpochRecord>();
  EXPECT_TRUE(hand.evaluated);
  EXPECT_EQ(hand.epoch, 2);
  EXPECT_THROW(nlohmann::json::parse(R"({"train_loss": 1})").get<EpochRecord>(),
               nlohmann::json::exception);
  EXPECT_THROW(nlohmann::json::parse(R"({"epoch": "one"})").get<EpochRecord>(),
               nlohmann::json::exception);

  std::istringstream torn(j.dump() + "\n{\"epoch\": 4, \"train_lo");
  try {
    read_epoch_records(torn, "m.jsonl");
    FAIL() << "a torn row was read";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("m.jsonl:2: not a metrics row"), std::string::npos)
        << e.what();
  }
  std::istringstream again(j.dump() + "\n{\"epoch\": 4, \"train_lo");
  const auto rows = read_epoch_records(again, "m.jsonl", /*skip_bad=*/true);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].epoch, 3);
  // Plots need the evaluation: a row without it is named by its line.
  std::istringstream unevaluated(j.dump() + "\n" + plain.dump());
  try {
    read_evaluated_epoch_records(unevaluated, "m.jsonl");
    FAIL() << "a row without an evaluation was plotted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("m.jsonl:2: not a metrics row (no test evaluation)"),
              std::string::npos)
        << e.what();
  }
}

} // namespace
} // namespace capsnet
