// The README's example of using capsnet as a library: build the paper's
// network, classify a batch, take one training step, and save a checkpoint.
#include <capsnet/capsnet.h>

#include <torch/optim/adam.h>

#include <cstdio>

int main() {
  capsnet::set_thread_count(/*threads=*/0); // every core

  capsnet::CapsNetConfig config; // the paper's MNIST network
  config.routing_iterations = 3;
  capsnet::CapsNet model(config);

  auto images = at::rand({4, 1, 28, 28});            // [B, 1, 28, 28], pixels in [0, 1]
  auto labels = at::tensor({3, 1, 4, 1}, at::kLong);  // [B]
  auto out = model->forward(images, /*mask_classes=*/labels);
  // out.capsules [B, 10, 16], out.lengths [B, 10], out.reconstruction [B, 1, 28, 28]

  auto loss = capsnet::margin_loss(out.lengths, labels) +
              0.0005 * capsnet::reconstruction_loss(out.reconstruction, images);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  adam.zero_grad();
  loss.backward();
  adam.step();

  capsnet::TrainOptions options; // records the architecture with the weights
  options.model = config;
  capsnet::save_checkpoint("example.pt", model, &adam, options, {});
  auto loaded = capsnet::load_checkpoint("example.pt");
  auto again = loaded.model->forward(images);

  // Inference from a checkpoint: no gradients, eval mode, inputs prepared.
  auto predictor = capsnet::Predictor::load("example.pt");
  auto result = predictor.classify(images); // capsules [B, 10, 16], lengths, predictions
  auto recon = predictor.reconstruct(result.capsules, result.predictions); // [B, 1, 28, 28]
  const bool same = at::equal(result.predictions, again.predictions) && recon.size(0) == 4;

  std::printf("loss %.4f, predictions %ld %ld %ld %ld, reloaded model agrees: %s\n",
              loss.item<double>(), again.predictions[0].item<long>(),
              again.predictions[1].item<long>(), again.predictions[2].item<long>(),
              again.predictions[3].item<long>(),
              again.lengths.allclose(model->forward(images).lengths) && same ? "yes" : "no");
  return again.lengths.allclose(model->forward(images).lengths) && same ? 0 : 1;
}
