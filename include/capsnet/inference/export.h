#pragma once

#include "capsnet/data/shape.h"
#include "capsnet/registry/options.h"
#include "capsnet/model/capsnet.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <utility>
#include <vector>

namespace capsnet {

/// The model's parameters under the seed's PyTorch names, in the seed's
/// order: conv1.weight, conv1.bias, conv2.weight, conv2.bias,
/// digit_capsules.weight [N_in, N_out, D_in, D_out], (digit_capsules.bias),
/// decoder.0.weight ... decoder.4.bias. Tensors are detached copies.
std::vector<std::pair<std::string, at::Tensor>> seed_state_dict(CapsNet& model);

/// What export_pytorch writes for `model`: a CapsNet's seed_state_dict;
/// another network's parameters and buffers under their module names (an
/// Efficient-CapsNet's conv1.weight ... bn4.running_var, primary_capsules.*,
/// routing_weight [N_in, K, D_in, D], routing_bias, decoder.*).
std::vector<std::pair<std::string, at::Tensor>> export_state_dict(torch::nn::Module& model);

/// What a PyTorch user needs besides the weights: the architecture, the
/// input convention (normalised or [0, 1] pixels) and the routing softmax.
/// `shape`: what the model was trained on (class names, per-channel
/// statistics, the picture preparation); the default is MNIST's.
nlohmann::json export_config(const TrainOptions& options, const DataShape& shape = {});

/// Writes seed_state_dict(model) as a file that Python's torch.load reads (a
/// dict of name -> tensor), atomically, and export_config beside it with the
/// extension .json. Returns the config's path.
std::string export_pytorch(torch::nn::Module& model, const TrainOptions& options,
                           const std::string& path, const DataShape& shape = {});

/// `capsnet export`: the checkpoint at `checkpoint` (which must offer
/// Capability::kExport) written by export_pytorch to `out` and its .json,
/// neither of which may be the checkpoint. Returns what was written: the two
/// paths, then each tensor's name and shape, one per line.
std::string export_checkpoint(const std::string& checkpoint, const std::string& out);

/// Reads a file written by export_pytorch (or torch.save of a dict of
/// tensors in Python) back: name -> tensor, in the file's order.
std::vector<std::pair<std::string, at::Tensor>> read_pytorch_state_dict(const std::string& path);

} // namespace capsnet
