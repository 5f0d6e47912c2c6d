#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/registry/options.h"
#include "capsnet/losses/objective.h"
#include "capsnet/model/baseline_cnn.h"
#include "capsnet/model/capsnet.h"

#include <torch/nn/module.h>

#include <stdexcept>

namespace capsnet {

/// Training cannot go on (a non-finite loss, a run directory in the way,
/// options that do not fit the data).
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a model and its objective give the trainer for one batch.
struct TaskOutput {
  at::Tensor loss;   ///< scalar, differentiable in training
  at::Tensor scores; ///< [B, K]: higher means more likely (capsule lengths for a CapsNet)
};

/// A model with its objective: what the Trainer trains and evaluate()
/// measures. Implement it to train your own network (see
/// tests/library_example.cpp; the baseline CNN of Table 1 is one).
class Task {
 public:
  virtual ~Task() = default;
  /// The module whose parameters are trained, saved and put in train/eval mode.
  virtual torch::nn::Module& module() = 0;
  /// Loss and class scores of `batch`; `training` selects the training-time
  /// behaviour (for a CapsNet: the decoder masked by the true labels).
  virtual TaskOutput forward(const Batch& batch, bool training) = 0;
  /// How the network computes (the module keeps it): the routing
  /// implementation, the precision and the fp32 convolutions' algorithm, for
  /// models with routing, a bf16 path (Capability::kBf16) or capsnet's
  /// convolutions; others ignore them.
  virtual void set_execution(RoutingImpl routing, Precision precision,
                             ConvAlgo conv = ConvAlgo::kAuto) {}
};

/// A capsule network (CapsNet, Efficient-CapsNet) and the paper's objective.
/// In training the decoder is masked by the true labels (or by the
/// prediction, the seed's choice); in evaluation always by the prediction:
/// the P longest capsules when images carry P labels.
class CapsNetTask : public Task {
 public:
  /// `model` with `objective`, its decoder masked in training as `mask` says.
  CapsNetTask(CapsuleNetworkPtr model, CapsNetObjective objective,
              DecoderMask mask = DecoderMask::kLabel);
  /// The model, objective and mask `options` describe.
  CapsNetTask(CapsuleNetworkPtr model, const TrainOptions& options);
  /// The same for a CapsNet.
  CapsNetTask(const CapsNet& model, CapsNetObjective objective,
              DecoderMask mask = DecoderMask::kLabel)
      : CapsNetTask(CapsuleNetworkPtr(model.ptr()), objective, mask) {}
  /// A CapsNet with the objective and mask `options` describe.
  CapsNetTask(const CapsNet& model, const TrainOptions& options)
      : CapsNetTask(CapsuleNetworkPtr(model.ptr()), options) {}
  torch::nn::Module& module() override { return *model_; }
  TaskOutput forward(const Batch& batch, bool training) override;
  void set_execution(RoutingImpl routing, Precision precision,
                     ConvAlgo conv = ConvAlgo::kAuto) override {
    model_->set_routing_impl(routing);
    model_->set_precision(precision);
    model_->set_conv_algo(conv);
  }
  /// The network it trains.
  const CapsuleNetworkPtr& model() { return model_; }

 private:
  CapsuleNetworkPtr model_;
  CapsNetObjective objective_;
  DecoderMask mask_;
};

/// The baseline CNN and cross-entropy: scores are the softmax probabilities.
class BaselineCnnTask : public Task {
 public:
  /// `model` with cross-entropy.
  explicit BaselineCnnTask(BaselineCnn model) : model_(std::move(model)) {}
  torch::nn::Module& module() override { return *model_; }
  /// One label per image: cross-entropy. P labels ([B, P], MultiMNIST): the
  /// cross-entropy against the targets spread evenly over the P classes.
  TaskOutput forward(const Batch& batch, bool training) override;
  /// The network it trains.
  BaselineCnn& model() { return model_; }

 private:
  BaselineCnn model_;
};

} // namespace capsnet
