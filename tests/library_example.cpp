// docs/library.md's example of using capsnet as a library. Part 1: build the
// paper's network, classify a batch, take one training step by hand, save and
// reload a checkpoint, predict. Part 2: train a model and data of your own
// through capsnet's Trainer (a Task, a BatchSource, the policies).
#include <capsnet/capsnet.h>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>

#include <cstdio>
#include <iostream>

// Your own data: 16x16 images of a bright vertical (class 0) or horizontal
// (class 1) bar at a random place, made on the fly.
class BarsSource : public capsnet::BatchSource {
 public:
  explicit BarsSource(int64_t size) : size_(size) {}
  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return 2; }
  capsnet::Batch get(const at::Tensor& indices, std::mt19937_64* rng) const override {
    const int64_t n = indices.size(0);
    capsnet::Batch batch;
    batch.images = at::zeros({n, 1, 16, 16});
    batch.labels = at::empty({n}, at::kLong);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = indices[k].item<int64_t>(); // example i is always the same image
      const int64_t where = 2 + i * 7 % 12, label = i % 2;
      batch.labels[k] = label;
      (label ? batch.images[k][0][where] : batch.images[k][0].select(1, where)).fill_(1.0);
    }
    if (rng) batch.images += 0.05 * at::rand_like(batch.images); // augmentation: a little noise
    batch.targets = capsnet::multi_hot(batch.labels, 2);
    batch.recon_targets = batch.images;
    return batch;
  }

 private:
  int64_t size_;
};

// Your own model and objective: a small CNN with cross entropy.
struct SmallCnnImpl : torch::nn::Module {
  SmallCnnImpl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 5).stride(2)))),
        fc(register_module("fc", torch::nn::Linear(8 * 6 * 6, 2))) {}
  at::Tensor forward(const at::Tensor& x) { return fc->forward(at::relu(conv->forward(x)).flatten(1)); }
  torch::nn::Conv2d conv;
  torch::nn::Linear fc;
};
TORCH_MODULE(SmallCnn);

struct SmallCnnTask : capsnet::Task {
  SmallCnn model;
  torch::nn::Module& module() override { return *model; }
  capsnet::TaskOutput forward(const capsnet::Batch& batch, bool /*training*/) override {
    auto logits = model->forward(batch.images);
    return {at::cross_entropy_loss(logits, batch.labels), logits};
  }
};

int main() {
  capsnet::set_thread_count(/*threads=*/0); // every core: the program's choice, not the library's

  // Part 1: the paper's CapsNet by hand.
  capsnet::CapsNetConfig config; // the paper's MNIST network
  config.routing_iterations = 3;
  capsnet::CapsNet model(config);

  auto images = at::rand({4, 1, 28, 28});            // [B, 1, 28, 28], pixels in [0, 1]
  auto labels = at::tensor({3, 1, 4, 1}, at::kLong);  // [B]
  auto out = model->forward(images, /*mask_classes=*/labels);
  // out.capsules [B, 10, 16], out.lengths [B, 10], out.reconstruction [B, 1, 28, 28]

  capsnet::CapsNetObjective objective; // Eq. 4 margin loss + 0.0005 * reconstruction
  auto loss = objective(out.lengths, labels, out.reconstruction, /*recon_targets=*/images);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  adam.zero_grad();
  loss.total.backward();
  adam.step();

  capsnet::TrainOptions options; // records the architecture with the weights
  options.model = config;
  capsnet::save_checkpoint("example.pt", model, &adam, options, {});
  auto loaded = capsnet::load_checkpoint("example.pt");
  auto again = loaded.capsnet("example")->forward(images);

  // Inference from a checkpoint: no gradients, eval mode, inputs prepared.
  auto predictor = capsnet::Predictor::load("example.pt");
  auto result = predictor.classify(images); // capsules [B, 10, 16], lengths, predictions
  auto recon = predictor.reconstruct(result.capsules, result.predictions); // [B, 1, 28, 28]
  const bool reloaded = at::equal(result.predictions, again.predictions) && recon.size(0) == 4 &&
                        again.lengths.allclose(model->forward(images).lengths);
  std::printf("loss %.4f, predictions %ld %ld %ld %ld, reloaded model agrees: %s\n",
              loss.total.item<double>(), again.predictions[0].item<long>(),
              again.predictions[1].item<long>(), again.predictions[2].item<long>(),
              again.predictions[3].item<long>(), reloaded ? "yes" : "no");

  // Part 2: your own model and data through the Trainer.
  torch::manual_seed(0);
  SmallCnnTask task;
  const BarsSource train_data(256), test_data(64);
  const capsnet::EpochSampler sampler(train_data.size(), /*batch_size=*/32, /*seed=*/1);
  torch::optim::Adam optimizer(task.model->parameters(), torch::optim::AdamOptions(1e-2));
  capsnet::Trainer trainer(task, train_data, sampler, optimizer);
  trainer.schedule = {/*initial=*/1e-2, /*decay_per_epoch=*/0.9};
  trainer.evaluation = {&test_data, /*batch_size=*/64};
  capsnet::RunLogger logger(std::cout, /*terminal=*/false, /*metrics_path=*/"");
  trainer.logger = &logger;
  int64_t gradient_hooks = 0; // where data-parallel training all-reduces
  trainer.on_gradients() = [&] { ++gradient_hooks; };
  capsnet::TrainingState state;
  const auto fit = trainer.fit(state, /*epochs=*/3);
  const bool trained = fit.last_eval.accuracy() >= 0.95 && gradient_hooks == 3 * 8;
  std::printf("own task: test accuracy %.1f%% after %ld steps, trained: %s\n",
              100 * fit.last_eval.accuracy(), static_cast<long>(state.global_step),
              trained ? "yes" : "no");

  if (reloaded && trained) std::printf("library example: all checks passed\n");
  return reloaded && trained ? 0 : 1;
}
