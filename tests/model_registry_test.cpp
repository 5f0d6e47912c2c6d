// The model registry: a toy model registered by the test trains, checkpoints,
// resumes and evaluates through the command line's own code (cli_app.h's
// App and runners), and the commands that need capsules refuse it by name.
// Checkpoints written before the registry (options naming "model_kind", or no
// model at all, and no recorded data shape) still load.

#include "cli_app.h"

#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/epoch_record.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/registry/models.h"
#include "capsnet/recipes/run.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/linear.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace capsnet {
namespace {

DataShape shape_of(int64_t side, int64_t channels, int64_t classes, int64_t labels) {
  DataShape shape;
  shape.image_size = side;
  shape.channels = channels;
  shape.classes = classes;
  shape.labels_per_image = labels;
  return shape;
}

namespace fs = std::filesystem;

// The toy model's own configuration, unknown to the library: it travels in
// TrainOptions::model_configs through keep_config.
struct ToyConfig {
  int64_t hidden = 0;  ///< 0: logistic regression on the pixels; N: one hidden layer of N
  double init_gain = 1; ///< the layers' initial weights, times this
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ToyConfig, hidden, init_gain)

// The smallest model a registry entry can hold, with a configuration of its own.
struct ToyLinearImpl : torch::nn::Module {
  ToyLinearImpl(const DataShape& shape, const ToyConfig& config) {
    const auto inputs = shape.image_size * shape.image_size * shape.channels;
    const auto width = config.hidden > 0 ? config.hidden : shape.classes;
    fc = register_module("fc", torch::nn::Linear(inputs, width));
    if (config.hidden > 0) out = register_module("out", torch::nn::Linear(width, shape.classes));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.mul_(config.init_gain);
  }
  at::Tensor forward(const at::Tensor& images) {
    const auto h = fc(images.flatten(1));
    return out ? out(at::relu(h)) : h;
  }
  torch::nn::Linear fc{nullptr}, out{nullptr};
};
TORCH_MODULE(ToyLinear);

class ToyLinearTask : public Task {
 public:
  explicit ToyLinearTask(ToyLinear model) : model_(std::move(model)) {}
  torch::nn::Module& module() override { return *model_; }
  TaskOutput forward(const Batch& batch, bool) override {
    const auto logits = model_->forward(batch.images);
    return {at::cross_entropy_loss(logits, batch.labels), at::softmax(logits, 1)};
  }

 private:
  ToyLinear model_;
};

void register_toy_model() {
  static const bool registered = [] {
    ModelInfo info;
    info.name = "toy-linear";
    info.description = "a test's logistic regression on the pixels, or a one-hidden-layer MLP";
    keep_config<ToyConfig>(info);
    info.build = [](const DataShape& shape, const TrainOptions& options) -> ModulePtr {
      return ToyLinear(shape, model_config<ToyConfig>(options, "toy-linear")).ptr();
    };
    info.task = [](const ModulePtr& module, const TrainOptions&) -> std::unique_ptr<Task> {
      return std::make_unique<ToyLinearTask>(
          ToyLinear(std::dynamic_pointer_cast<ToyLinearImpl>(module)));
    };
    info.summary = [](const TrainOptions& options) {
      return "toy model, hidden " +
             std::to_string(model_config<ToyConfig>(options, "toy-linear").hidden);
    };
    register_model(std::move(info));
    return true;
  }();
  (void)registered;
}

std::string mnist_dir() {
  const char* dir = std::getenv("CAPSNET_TEST_MNIST");
  return dir ? dir : "data/mnist";
}

// `capsnet ARGS...` through the tool's App and runners; the exit code.
int run_cli(std::vector<std::string> args) {
  CLI::App app{"capsnet"};
  const auto commands = cli::add_commands(app);
  args.insert(args.begin(), "capsnet");
  std::vector<const char*> argv;
  for (const auto& arg : args) argv.push_back(arg.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return cli::parsed_runner(app, commands)();
}

class ModelRegistry : public ::testing::Test {
 protected:
  void SetUp() override {
    register_toy_model();
    dir_ = fs::temp_directory_path() / ("capsnet-registry-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ModelRegistry, ListsTheBuiltInModels) {
  const auto names = model_names();
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(names[0], "capsnet");
  EXPECT_EQ(names[1], "efficient-capsnet");
  EXPECT_EQ(names[2], "baseline-cnn");
  EXPECT_TRUE(model_info("capsnet").offers(Capability::kDecoder));
  EXPECT_TRUE(model_info("efficient-capsnet").offers(Capability::kCapsules));
  EXPECT_TRUE(model_info("efficient-capsnet").offers(Capability::kBf16)); // its stem
  EXPECT_FALSE(model_info("baseline-cnn").offers(Capability::kBf16));
  EXPECT_FALSE(model_info("baseline-cnn").offers(Capability::kCapsules));
  try {
    model_info("resnet");
    FAIL() << "an unknown model was found";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'resnet' is not a known model; expected capsnet, "
                                         "efficient-capsnet, baseline-cnn"),
              std::string::npos)
        << e.what();
  }
  ModelInfo twice = model_info("capsnet");
  EXPECT_THROW(register_model(twice), std::invalid_argument);
}

TEST_F(ModelRegistry, AToyModelTrainsResumesAndEvaluatesThroughTheCommandLine) {
  const auto run = (dir_ / "toy").string();
  const std::vector<std::string> common = {"--data", mnist_dir(), "--limit", "256",
                                           "--test-limit", "128", "--batch-size", "32",
                                           "--threads", "1"};
  auto first = std::vector<std::string>{"train", "--model", "toy-linear", "--epochs", "1",
                                        "--out", run, "--model-config", R"({"hidden": 24})",
                                        "--lr", "0.01"};
  first.insert(first.end(), common.begin(), common.end());
  ASSERT_EQ(run_cli(first), 0);
  auto loaded = load_checkpoint(run + "/last.pt");
  EXPECT_EQ(loaded.info->name, "toy-linear");
  EXPECT_EQ(loaded.shape, (shape_of(28, 1, 10, 1)));
  EXPECT_EQ(loaded.state.epoch, 1);
  // The model's own configuration reached its build, config.json and the checkpoint.
  const auto toy = std::dynamic_pointer_cast<ToyLinearImpl>(loaded.network);
  ASSERT_TRUE(toy);
  ASSERT_TRUE(toy->out);
  EXPECT_EQ(toy->fc->weight.size(0), 24);
  EXPECT_EQ(model_config<ToyConfig>(loaded.options, "toy-linear").hidden, 24);
  EXPECT_EQ(model_config<ToyConfig>(loaded.options, "toy-linear").init_gain, 1.0);
  std::ifstream config_file(run + "/config.json");
  EXPECT_EQ(nlohmann::json::parse(config_file)["model_configs"]["toy-linear"]["hidden"], 24);

  // Its configuration may not change on resume, from the command line or the library.
  try {
    run_cli({"train", "--resume", run, "--epochs", "2", "--model-config", R"({"hidden": 8})"});
    FAIL() << "--model-config changed on --resume";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--model-config cannot change when resuming"),
              std::string::npos)
        << e.what();
  }
  auto changed = with_model_config(loaded.options, {{"hidden", 8}});
  changed.epochs = 2;
  TrainControl control;
  control.resume = true;
  try {
    train(changed, run, control);
    FAIL() << "a run resumed with another architecture";
  } catch (const TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("architecture differs"), std::string::npos) << e.what();
  }

  ASSERT_EQ(run_cli({"train", "--resume", run, "--epochs", "3", "--threads", "1"}), 0);
  const auto rows = read_epoch_records(run + "/metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].epoch, 3);
  // The MLP learns MNIST: far above chance after three epochs of 256 images.
  EXPECT_GT(rows[2].test_accuracy, 0.5);

  auto resumed = load_checkpoint(run + "/last.pt");
  EXPECT_EQ(resumed.state.epoch, 3);
  const auto data = load_dataset(mnist_dir(), Split::kTest, "mnist", 128);
  const auto result = evaluate(resumed, data, resumed.options);
  EXPECT_EQ(result.total, 128);
  EXPECT_DOUBLE_EQ(result.accuracy(), rows[2].test_accuracy);
  EXPECT_EQ(run_cli({"eval", "--checkpoint", run + "/last.pt", "--data", mnist_dir(), "--limit",
                     "64"}),
            0);

  // The commands that need capsules name the model and what it lacks.
  try {
    run_cli({"predict", "--checkpoint", run + "/last.pt", mnist_dir() + "/t10k-images-idx3-ubyte"});
    FAIL() << "predict ran on a model without capsules";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("capsnet predict needs capsule lengths and poses, which "
                                         "model 'toy-linear' does not offer"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(run_cli({"export", "--checkpoint", run + "/last.pt", "--out",
                        (dir_ / "toy.pth").string()}),
               CheckpointError);
}

TEST_F(ModelRegistry, ModelConfigEditsTheChosenModelsOwnFields) {
  TrainOptions options;
  options.model_name = "toy-linear";
  EXPECT_EQ(model_config<ToyConfig>(options, "toy-linear").hidden, 0); // the defaults
  const auto edited = with_model_config(options, {{"init_gain", 0.5}});
  EXPECT_EQ(model_config<ToyConfig>(edited, "toy-linear").init_gain, 0.5);
  EXPECT_EQ(model_config<ToyConfig>(edited, "toy-linear").hidden, 0);
  // It round-trips through the options' JSON, as config.json and checkpoints hold them.
  const auto reread = train_options_from_json(nlohmann::json(edited));
  EXPECT_EQ(model_config<ToyConfig>(reread, "toy-linear").init_gain, 0.5);
  try {
    with_model_config(options, {{"hiden", 3}});
    FAIL() << "an unknown field was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model 'toy-linear' has no field 'hiden'; its fields are "
                                         "hidden, init_gain"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(with_model_config(options, {{"hidden", "wide"}}), std::invalid_argument);
  EXPECT_THROW(with_model_config(options, nlohmann::json::array({1})), std::invalid_argument);
  // The built-in models' configurations go through the same path.
  TrainOptions capsnet;
  EXPECT_EQ(with_model_config(capsnet, {{"routing_iterations", 1}}).model.routing_iterations, 1);
  capsnet.model_name = "efficient-capsnet";
  EXPECT_EQ(with_model_config(capsnet, {{"primary_dim", 4}}).efficient.primary_dim, 4);
}

// A checkpoint as the code before the registry wrote it: options with
// "model_kind" (or none, older still) and no "data_shape".
void write_old_checkpoint(const std::string& path, CapsNet& model, const TrainOptions& options,
                          bool with_kind) {
  auto json = nlohmann::json(options);
  json.erase("model_name");
  if (with_kind) json["model_kind"] = "capsnet";
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string("capsnet-checkpoint-v1")));
  archive.write("options", c10::IValue(json.dump()));
  torch::serialize::OutputArchive model_archive;
  model->save(model_archive);
  archive.write("model", model_archive);
  archive.write("has_optimizer", c10::IValue(false));
  for (const char* key : {"epoch", "step_in_epoch", "global_step", "epoch_correct", "epoch_seen"}) {
    archive.write(key, c10::IValue(int64_t(4)));
  }
  for (const char* key : {"best_accuracy", "epoch_loss_sum", "epoch_seconds"}) {
    archive.write(key, c10::IValue(0.5));
  }
  archive.save_to(path);
}

TEST_F(ModelRegistry, CheckpointsFromBeforeTheRegistryLoad) {
  TrainOptions options;
  options.model.conv1_channels = 8;
  options.model.primary_types = 2;
  options.model.decoder_hidden = {16, 16};
  torch::manual_seed(5);
  CapsNet model(options.model);
  for (const bool with_kind : {true, false}) {
    const auto path = (dir_ / (with_kind ? "kind.pt" : "none.pt")).string();
    write_old_checkpoint(path, model, options, with_kind);
    auto loaded = load_checkpoint(path);
    EXPECT_EQ(loaded.info->name, "capsnet");
    EXPECT_EQ(loaded.options.model_name, "capsnet");
    EXPECT_EQ(loaded.shape, (shape_of(28, 1, 10, 1)));
    EXPECT_EQ(loaded.state.epoch, 4);
    const auto a = model->parameters(), b = loaded.module().parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].equal(b[k]));
  }
  auto json = nlohmann::json(options);
  json["model_name"] = "baseline-cnn";
  json["model_kind"] = "capsnet"; // the new name wins over the old
  EXPECT_EQ(train_options_from_json(json).model_name, "baseline-cnn");
}

TEST_F(ModelRegistry, AnUnknownModelInACheckpointIsNamed) {
  TrainOptions options;
  const auto path = (dir_ / "odd.pt").string();
  // The options name a model this program does not register.
  auto json = nlohmann::json(options);
  json["model_name"] = "resnet";
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string("capsnet-checkpoint-v1")));
  archive.write("options", c10::IValue(json.dump()));
  archive.save_to(path);
  try {
    load_checkpoint(path);
    FAIL() << "a checkpoint of an unknown model loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("'resnet' is not a known model"), std::string::npos)
        << e.what();
  }
}

} // namespace
} // namespace capsnet
