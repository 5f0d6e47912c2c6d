#include "capsnet/engine/options.h"

#include "capsnet/data/dataset.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <stdexcept>
#include <thread>

namespace capsnet {

std::string to_string(DecoderMask mask) {
  return mask == DecoderMask::kLabel ? "label" : "prediction";
}

DecoderMask decoder_mask_from_string(const std::string& name) {
  if (name == "label") return DecoderMask::kLabel;
  if (name == "prediction") return DecoderMask::kPrediction;
  throw std::invalid_argument("unknown decoder mask '" + name +
                              "': expected 'label' (the paper) or 'prediction' (the seed)");
}

TrainOptions preset_options(const std::string& name) {
  TrainOptions options;
  options.preset = name;
  if (name == "paper") return options;
  if (name != "seed") {
    throw std::invalid_argument("unknown preset '" + name + "': expected 'paper' or 'seed'");
  }
  options.lr_decay = 1.0;
  options.shift = 0;
  options.recon_loss = ReconstructionLoss::kMeanSquared;
  options.mask = DecoderMask::kPrediction;
  options.normalize = true;
  options.margin.squared = false;
  options.model.routing_softmax = RoutingSoftmax::kChildren;
  options.model.w_init_std = 1.0;
  return options;
}

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

} // namespace

void validate(const TrainOptions& o) {
  require(is_known_dataset(o.dataset),
          "--dataset must be mnist or fashion-mnist, got '" + o.dataset + "'");
  require(o.device == "auto" || o.device == "cpu" || o.device.rfind("cuda", 0) == 0,
          "--device must be auto, cpu or cuda[:N], got '" + o.device + "'");
  require(o.epochs >= 1, "--epochs must be at least 1, got " + std::to_string(o.epochs));
  require(o.batch_size >= 1, "--batch-size must be at least 1, got " + std::to_string(o.batch_size));
  require(o.eval_batch_size >= 1, "--eval-batch-size must be at least 1");
  require(std::isfinite(o.lr) && o.lr > 0, "--lr must be a positive number, got " + std::to_string(o.lr));
  require(std::isfinite(o.lr_decay) && o.lr_decay > 0 && o.lr_decay <= 1,
          "--lr-decay must be in (0, 1], got " + std::to_string(o.lr_decay));
  require(o.shift >= 0 && o.shift < o.model.image_size,
          "--shift must be in [0, image size), got " + std::to_string(o.shift));
  require(std::isfinite(o.recon_weight) && o.recon_weight >= 0,
          "--recon-weight must be >= 0, got " + std::to_string(o.recon_weight));
  require(o.threads >= 0, "--threads must be >= 0 (0: every core), got " + std::to_string(o.threads));
  require(o.limit >= 0, "--limit must be >= 0, got " + std::to_string(o.limit));
  require(o.test_limit >= 0, "--test-limit must be >= 0, got " + std::to_string(o.test_limit));
  o.model.validate();
}

nlohmann::json to_json(const CapsNetConfig& c) {
  return {{"image_size", c.image_size},
          {"in_channels", c.in_channels},
          {"num_classes", c.num_classes},
          {"conv1_channels", c.conv1_channels},
          {"conv1_kernel", c.conv1_kernel},
          {"primary_types", c.primary_types},
          {"primary_dim", c.primary_dim},
          {"primary_kernel", c.primary_kernel},
          {"primary_stride", c.primary_stride},
          {"digit_dim", c.digit_dim},
          {"routing_iterations", c.routing_iterations},
          {"routing_softmax", to_string(c.routing_softmax)},
          {"digit_bias", c.digit_bias},
          {"w_init_std", c.w_init_std},
          {"decoder_hidden", c.decoder_hidden}};
}

CapsNetConfig model_config_from_json(const nlohmann::json& j) {
  CapsNetConfig c;
  j.at("image_size").get_to(c.image_size);
  j.at("in_channels").get_to(c.in_channels);
  j.at("num_classes").get_to(c.num_classes);
  j.at("conv1_channels").get_to(c.conv1_channels);
  j.at("conv1_kernel").get_to(c.conv1_kernel);
  j.at("primary_types").get_to(c.primary_types);
  j.at("primary_dim").get_to(c.primary_dim);
  j.at("primary_kernel").get_to(c.primary_kernel);
  j.at("primary_stride").get_to(c.primary_stride);
  j.at("digit_dim").get_to(c.digit_dim);
  j.at("routing_iterations").get_to(c.routing_iterations);
  c.routing_softmax = routing_softmax_from_string(j.at("routing_softmax").get<std::string>());
  j.at("digit_bias").get_to(c.digit_bias);
  j.at("w_init_std").get_to(c.w_init_std);
  j.at("decoder_hidden").get_to(c.decoder_hidden);
  c.validate();
  return c;
}

nlohmann::json to_json(const TrainOptions& o) {
  return {{"preset", o.preset},
          {"dataset", o.dataset},
          {"data_dir", o.data_dir},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"lr_decay", o.lr_decay},
          {"shift", o.shift},
          {"recon_weight", o.recon_weight},
          {"recon_loss", to_string(o.recon_loss)},
          {"mask", to_string(o.mask)},
          {"normalize", o.normalize},
          {"margin_m_plus", o.margin.m_plus},
          {"margin_m_minus", o.margin.m_minus},
          {"margin_lambda", o.margin.lambda},
          {"margin_squared", o.margin.squared},
          {"seed", o.seed},
          {"threads", o.threads},
          {"limit", o.limit},
          {"test_limit", o.test_limit},
          {"eval_batch_size", o.eval_batch_size},
          {"routing", to_string(o.routing)},
          {"precision", to_string(o.precision)},
          {"device", o.device},
          {"model", to_json(o.model)}};
}

TrainOptions train_options_from_json(const nlohmann::json& j) {
  TrainOptions o;
  j.at("preset").get_to(o.preset);
  j.at("dataset").get_to(o.dataset);
  j.at("data_dir").get_to(o.data_dir);
  j.at("epochs").get_to(o.epochs);
  j.at("batch_size").get_to(o.batch_size);
  j.at("lr").get_to(o.lr);
  j.at("lr_decay").get_to(o.lr_decay);
  j.at("shift").get_to(o.shift);
  j.at("recon_weight").get_to(o.recon_weight);
  o.recon_loss = reconstruction_loss_from_string(j.at("recon_loss").get<std::string>());
  o.mask = decoder_mask_from_string(j.at("mask").get<std::string>());
  j.at("normalize").get_to(o.normalize);
  j.at("margin_m_plus").get_to(o.margin.m_plus);
  j.at("margin_m_minus").get_to(o.margin.m_minus);
  j.at("margin_lambda").get_to(o.margin.lambda);
  j.at("margin_squared").get_to(o.margin.squared);
  j.at("seed").get_to(o.seed);
  j.at("threads").get_to(o.threads);
  j.at("limit").get_to(o.limit);
  j.at("test_limit").get_to(o.test_limit);
  j.at("eval_batch_size").get_to(o.eval_batch_size);
  o.routing = routing_impl_from_string(j.at("routing").get<std::string>());
  // Runs written before --precision existed were fp32.
  o.precision = precision_from_string(j.value("precision", std::string("fp32")));
  o.device = j.value("device", std::string("cpu"));
  o.model = model_config_from_json(j.at("model"));
  return o;
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const auto cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int>(cores) : 1;
}

} // namespace capsnet
